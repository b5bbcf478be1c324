/**
 * The architectures a netprobify binary is built for, and what building one on a machine of
 * another architecture takes (Debian's cross toolchain, qemu-user to run it): one table for
 * build.ts and the release script. scripts/build-libpcap.sh names the same packages in bash.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export type Arch = "amd64" | "arm64";

/** A program or file a build needs, and the Debian package that provides it. */
export interface Requirement {
  readonly what: string;
  readonly found: () => boolean;
  readonly debianPackage: string;
}

export interface Target {
  readonly arch: Arch;
  /** `bun build --compile --target`. */
  readonly bunTarget: "bun-linux-x64" | "bun-linux-arm64";
  /** process.arch on this architecture. */
  readonly nodeArch: "x64" | "arm64";
  /** The npm package holding Bun's runtime for it (an optional dependency of the `bun` package). */
  readonly runtimePackage: string;
  readonly triplet: string;
  /** Debian's cross C compiler and C library headers for it (package names). */
  readonly crossCompiler: string;
  readonly crossLibc: string;
  /** The qemu-user emulator that runs its binaries on another machine, and its sysroot (-L). */
  readonly qemu: string;
  readonly sysroot: string;
}

export const TARGETS: Record<Arch, Target> = {
  amd64: {
    arch: "amd64",
    bunTarget: "bun-linux-x64",
    nodeArch: "x64",
    runtimePackage: "@oven/bun-linux-x64",
    triplet: "x86_64-linux-gnu",
    crossCompiler: "gcc-x86-64-linux-gnu",
    crossLibc: "libc6-dev-amd64-cross",
    qemu: "qemu-x86_64-static",
    sysroot: "/usr/x86_64-linux-gnu",
  },
  arm64: {
    arch: "arm64",
    bunTarget: "bun-linux-arm64",
    nodeArch: "arm64",
    runtimePackage: "@oven/bun-linux-aarch64",
    triplet: "aarch64-linux-gnu",
    crossCompiler: "gcc-aarch64-linux-gnu",
    crossLibc: "libc6-dev-arm64-cross",
    qemu: "qemu-aarch64-static",
    sysroot: "/usr/aarch64-linux-gnu",
  },
};

export function isArch(name: string): name is Arch {
  return Object.hasOwn(TARGETS, name);
}

/** This machine's architecture, or null when netprobify is not built for it. */
export function hostArch(): Arch | null {
  return (Object.values(TARGETS).find((t) => t.nodeArch === process.arch)?.arch ?? null) as Arch | null;
}

/** Where scripts/build-libpcap.sh puts the libpcap for `arch`: the machine's own in build/libpcap. */
export function libpcapDir(root: string, arch: Arch): string {
  return join(root, "build", arch === hostArch() ? "libpcap" : `libpcap-${arch}`);
}

const program = (name: string, debianPackage: string): Requirement => ({ what: name, found: () => Bun.which(name) !== null, debianPackage });

/** What building and checking a binary for `arch` takes on this machine beyond the native build's tools. */
export function crossRequirements(arch: Arch): Requirement[] {
  if (arch === hostArch()) return [];
  const t = TARGETS[arch];
  const headers = join(t.sysroot, "include", "stdio.h");
  return [
    program(`${t.triplet}-gcc`, t.crossCompiler),
    { what: headers, found: () => existsSync(headers), debianPackage: t.crossLibc },
    program(t.qemu, "qemu-user-static"),
  ];
}

/** argv running a binary built for `arch`: itself on its own architecture, through qemu-user elsewhere. */
export function runOn(arch: Arch, binary: string, args: string[]): string[] {
  if (arch === hostArch()) return [binary, ...args];
  const t = TARGETS[arch];
  return [t.qemu, "-L", t.sysroot, binary, ...args];
}

/** The NEEDED libraries a binary may have: glibc's own, nothing a Debian machine might lack. */
export const GLIBC_LIBRARIES = /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$/;
