/**
 * The configuration the daemon runs when it is given no file and finds neither netprobify.yaml
 * nor config.yaml: a self-test that probes this host over loopback with each probe type and
 * family, so a fresh install shows working metrics on :8000 before anyone writes a config.
 * Loopback needs no route, no neighbour and no permission from anyone else's network.
 */

/** The name issues and warnings about the built-in configuration carry in place of a file name. */
export const DEFAULT_CONFIG_SOURCE = "<built-in default config>";

export const DEFAULT_CONFIG_YAML = `# Built-in netprobify configuration: probes this host over loopback.
global:
  probe_name: netprobify-selftest
  interval: 10
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 8000
  dns_update_interval: 300

groups:
  local:
    src_port_a: 65000
    src_port_z: 65015

targets:
  # A closed port answers a SYN with RST-ACK, which counts as an answer: no listener is needed.
  loopback-tcpsyn-ipv4:
    type: TCPsyn
    destination: 127.0.0.1
    dst_port: 22
    nb_packets: 10
    timeout: 1
  loopback-tcpsyn-ipv6:
    type: TCPsyn
    destination: "::1"
    dst_port: 22
    nb_packets: 10
    timeout: 1
  loopback-icmpping-ipv4:
    type: ICMPping
    destination: 127.0.0.1
    nb_packets: 10
    timeout: 1
  loopback-icmpping-ipv6:
    type: ICMPping
    destination: "::1"
    nb_packets: 10
    timeout: 1
  # 33434, traceroute's first port, is closed almost everywhere: the kernel answers port unreachable.
  loopback-udpunreachable-ipv4:
    type: UDPunreachable
    destination: 127.0.0.1
    dst_port: 33434
    nb_packets: 10
    timeout: 1
  loopback-udpunreachable-ipv6:
    type: UDPunreachable
    destination: "::1"
    dst_port: 33434
    nb_packets: 10
    timeout: 1
`;
