/*
 * deny-write-execute PROGRAM [ARG...]: runs PROGRAM under the seccomp filter systemd installs for
 * MemoryDenyWriteExecute=yes (systemd 252, src/shared/seccomp-util.c, in its own words): mmap
 * with both PROT_WRITE and PROT_EXEC, mprotect and pkey_mprotect adding PROT_EXEC, and shmat
 * with SHM_EXEC fail with EPERM. Lets a test show what that setting does to a program without
 * systemd as PID 1. Sets no_new_privs, as an unprivileged seccomp filter requires.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "deny-write-execute: x86-64 and arm64 only"
#endif

/* The low 32 bits of argument n (the flag arguments fit in them). */
#define ARG(n) (offsetof(struct seccomp_data, args) + 8 * (n))
#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define DENY BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: deny-write-execute PROGRAM [ARG...]\n");
    return 64;
  }
  struct sock_filter filter[] = {
      /* 0 */ LOAD(offsetof(struct seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
      /* 2 */ ALLOW,
      /* 3 */ LOAD(offsetof(struct seccomp_data, nr)),
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, 5),
      /* 5 */ LOAD(ARG(2)),
      /* 6 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC),
      /* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1),
      /* 8 */ DENY,
      /* 9 */ ALLOW,
      /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 1, 0),
      /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_pkey_mprotect, 0, 4),
      /* 12 */ LOAD(ARG(2)),
      /* 13 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
      /* 14 */ DENY,
      /* 15 */ ALLOW,
      /* 16 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_shmat, 0, 4),
      /* 17 */ LOAD(ARG(2)),
      /* 18 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SHM_EXEC, 0, 1),
      /* 19 */ DENY,
      /* 20 */ ALLOW,
      /* 21 */ ALLOW,
  };
  struct sock_fprog program = {sizeof filter / sizeof filter[0], filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    perror("deny-write-execute: seccomp");
    return 71;
  }
  execv(argv[1], argv + 1);
  perror("deny-write-execute: execv");
  return 127;
}
