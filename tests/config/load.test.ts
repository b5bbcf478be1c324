import { expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConfigFile, loadConfigFile, loadDefaultConfig, parseConfigText, type ParseResult } from "../../src/config/load.ts";
import { formatIssue, formatIssues, MAX_SHOWN_ISSUES } from "../../src/config/validate-yaml.ts";
import { DEFAULT_HISTOGRAM_BUCKETS } from "../../src/config/schema.ts";
import { checkFile } from "../../src/daemon/configuration.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "config");

const fixture = (name: string) => Bun.file(join(FIXTURES, name)).text();

/** Parses a fixture, naming it by its base name in issues so that expectations stay short. */
async function parseFixture(name: string): Promise<ParseResult> {
  return parseConfigText(await fixture(name), name);
}

function issuesOf(result: ParseResult): string[] {
  if (result.ok) throw new Error(`expected issues, got a valid config with warnings ${JSON.stringify(result.warnings)}`);
  return result.issues.map(formatIssue);
}

function configOf(result: ParseResult) {
  if (!result.ok) throw new Error(`expected a valid config, got:\n${result.issues.map(formatIssue).join("\n")}`);
  return result;
}

// --- every invalid fixture, one fault each, with the exact lines `netprobify check` prints ---

const INVALID: [file: string, lines: string[]][] = [
  ["bad-address-family.yaml", [
    "bad-address-family.yaml:20:21: targets.web.address_family: \"ipv5\" is not allowed (ipv4 or ipv6)",
  ]],
  ["bad-alert-level.yaml", [
    "bad-alert-level.yaml:20:18: targets.web.alert_level: \"critical\" is not allowed (one of paging, paging_validation, sandbox, no_alert)",
  ]],
  ["bad-auto-register.yaml", [
    "bad-auto-register.yaml:20:30: targets.web.auto_register_to_groups: \"true\" is not a boolean (true or false)",
  ]],
  ["bad-description.yaml", [
    "bad-description.yaml:20:18: targets.web.description: 42 is not a string (text, in quotes if YAML would read it as something else)",
  ]],
  ["bad-disable-dynamic-inventories.yaml", [
    "bad-disable-dynamic-inventories.yaml:9:32: global.disable_dynamic_inventories: \"api\" is not a list (a list of inventory names)",
  ]],
  ["bad-dns-update-interval.yaml", [
    "bad-dns-update-interval.yaml:8:24: global.dns_update_interval: -1 is out of range (an integer from 0 to 86400)",
  ]],
  ["bad-dont-fragment.yaml", [
    "bad-dont-fragment.yaml:20:20: targets.web.dont_fragment: 1 is not a boolean (true or false)",
  ]],
  ["bad-dscp.yaml", [
    "bad-dscp.yaml:14:11: groups.standard.dscp: 64 is out of range (an integer from 0 to 63)",
  ]],
  ["bad-dst-port-float.yaml", [
    "bad-dst-port-float.yaml:19:15: targets.web.dst_port: 443.5 is not an integer (an integer from 1 to 65535)",
  ]],
  ["bad-dst-port-range.yaml", [
    "bad-dst-port-range.yaml:19:15: targets.web.dst_port: 70000 is out of range (an integer from 1 to 65535)",
  ]],
  ["bad-dst-port-string.yaml", [
    "bad-dst-port-string.yaml:19:15: targets.web.dst_port: \"https\" is not a number (an integer from 1 to 65535)",
  ]],
  ["bad-dst-port-zero.yaml", [
    "bad-dst-port-zero.yaml:19:15: targets.web.dst_port: 0 is out of range (an integer from 1 to 65535)",
  ]],
  ["bad-empty-destination.yaml", [
    "bad-empty-destination.yaml:18:18: targets.web.destination: the value is empty (an IP address, a hostname, a CIDR subnet or a range)",
  ]],
  ["bad-empty-dst-port.yaml", [
    "bad-empty-dst-port.yaml:19:5: targets.web.dst_port: the value is empty (an integer from 1 to 65535)",
  ]],
  ["bad-empty-file.yaml", [
    "bad-empty-file.yaml:1:1: the file holds no settings (a map with global, groups and targets)",
  ]],
  ["bad-explicit-group-name.yaml", [
    "bad-explicit-group-name.yaml:21:21: targets.web.explicit_groups.register_to[0]: \"Transit A\" is not a valid group name (a name of up to 255 lowercase letters, digits, _, - and .)",
  ]],
  ["bad-family-mismatch.yaml", [
    "bad-family-mismatch.yaml:19:21: targets.web.address_family: \"ipv4\" does not match destination \"fd00::1\" (ipv6, the destination's family, or no address_family)",
  ]],
  ["bad-global-not-map.yaml", [
    "bad-global-not-map.yaml:2:9: global: \"lab\" is not a map (a map of the global settings)",
  ]],
  ["bad-global-timeout.yaml", [
    "bad-global-timeout.yaml:9:12: global.timeout: 0 is out of range (a number above 0 and at most 86400)",
  ]],
  ["bad-group-name.yaml", [
    "bad-group-name.yaml:11:3: groups.Transit_1: \"Transit_1\" is not a valid name (a name of up to 255 lowercase letters, digits, _, - and .)",
  ]],
  ["bad-group-payload-large.yaml", [
    "bad-group-payload-large.yaml:14:22: groups.standard.ip_payload_size: 65516 is out of range (an integer from 8 to 65515)",
  ]],
  ["bad-group-payload-small.yaml", [
    "bad-group-payload-small.yaml:14:22: groups.standard.ip_payload_size: 4 is out of range (an integer from 8 to 65515)",
  ]],
  ["bad-groups-list.yaml", [
    "bad-groups-list.yaml:11:3: groups: a list is not a map (a map of group names to group settings)",
  ]],
  ["bad-histogram-buckets-order.yaml", [
    "bad-histogram-buckets-order.yaml:9:22: global.histogram_buckets: 0.05 is not above the bound before it, 0.1 (a strictly increasing list of at most 64 numbers of seconds above 0, or [] to turn histograms off)",
  ]],
  ["bad-histogram-buckets-zero.yaml", [
    "bad-histogram-buckets-zero.yaml:9:23: global.histogram_buckets[0]: 0 is out of range (a number above 0)",
  ]],
  ["bad-histogram-per-destination.yaml", [
    "bad-histogram-per-destination.yaml:9:30: global.histogram_per_destination: \"yes please\" is not a boolean (true or false)",
  ]],
  ["bad-interval-float.yaml", [
    "bad-interval-float.yaml:4:13: global.interval: 1.5 is not an integer (an integer from 1 to 86400)",
  ]],
  ["bad-interval-packets.yaml", [
    "bad-interval-packets.yaml:5:21: global.interval_packets: -0.5 is out of range (a number from 0 to 86400)",
  ]],
  ["bad-interval-zero.yaml", [
    "bad-interval-zero.yaml:4:13: global.interval: 0 is out of range (an integer from 1 to 86400)",
  ]],
  ["bad-is-subnet.yaml", [
    "bad-is-subnet.yaml:20:16: targets.web.is_subnet: \"sometimes\" is not a boolean (true or false)",
  ]],
  // The original read a subnet or range as a hostname unless is_subnet was true: the target never
  // resolved and was never probed. Probing it here would send what the original never sent.
  ["bad-subnet-without-is-subnet.yaml", [
    "bad-subnet-without-is-subnet.yaml:17:5: targets.racks.is_subnet: destination \"198.18.3.0/26\" is a subnet, but is_subnet is not true (true, to probe every address of it; without it the original read the destination as a hostname, which never resolves)",
    "bad-subnet-without-is-subnet.yaml:23:16: targets.range.is_subnet: destination \"198.18.4.1-20\" is a range, but is_subnet is not true (true, to probe every address of it; without it the original read the destination as a hostname, which never resolves)",
    "bad-subnet-without-is-subnet.yaml:25:5: targets.v6.is_subnet: destination \"fd00::/120\" is a subnet, but is_subnet is not true (true, to probe every address of it; without it the original read the destination as a hostname, which never resolves)",
  ]],
  ["bad-l3-raw-socket.yaml", [
    "bad-l3-raw-socket.yaml:9:18: global.l3_raw_socket: \"maybe\" is not a boolean (true or false)",
  ]],
  ["bad-logging-level.yaml", [
    "bad-logging-level.yaml:6:18: global.logging_level: \"LOUD\" is not allowed (one of CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET)",
  ]],
  ["bad-max-probes-per-second.yaml", [
    "bad-max-probes-per-second.yaml:9:26: global.max_probes_per_second: 0 is out of range (an integer from 1 to 10000000)",
  ]],
  ["bad-missing-destination.yaml", [
    "bad-missing-destination.yaml:17:5: targets.web: destination is required for a TCPsyn target (an IP address, a hostname, a CIDR subnet or a range)",
  ]],
  ["bad-missing-dst-port-tcpsyn.yaml", [
    "bad-missing-dst-port-tcpsyn.yaml:17:5: targets.web: dst_port is required for a TCPsyn target (an integer from 1 to 65535)",
  ]],
  ["bad-missing-dst-port-udp.yaml", [
    "bad-missing-dst-port-udp.yaml:17:5: targets.web: dst_port is required for a UDPunreachable target (an integer from 1 to 65535)",
  ]],
  ["bad-missing-global.yaml", [
    "bad-missing-global.yaml:2:1: global is required (a map of the global settings)",
  ]],
  ["bad-missing-groups.yaml", [
    "bad-missing-groups.yaml:2:1: groups is required (a map of group names to group settings)",
  ]],
  ["bad-missing-probe-name.yaml", [
    "bad-missing-probe-name.yaml:3:3: global: probe_name is required (a name of up to 255 lowercase letters, digits, _, - and .)",
  ]],
  ["bad-missing-type.yaml", [
    "bad-missing-type.yaml:17:5: targets.web: type is required (one of TCPsyn, ICMPping, UDPunreachable, TWAMPlight)",
  ]],
  ["bad-nb-packets.yaml", [
    "bad-nb-packets.yaml:20:17: targets.web.nb_packets: 0 is out of range (an integer from 1 to 1000000)",
  ]],
  ["bad-nb-proc.yaml", [
    "bad-nb-proc.yaml:5:12: global.nb_proc: 0 is out of range (an integer from 1 to 64)",
  ]],
  ["bad-payload-icmp-small.yaml", [
    "bad-payload-icmp-small.yaml:19:22: targets.web.ip_payload_size: 4 is out of range (an integer from 8 to 65515 over IPv4 or 65535 over IPv6)",
  ]],
  ["bad-payload-ipv4-large.yaml", [
    "bad-payload-ipv4-large.yaml:20:22: targets.web.ip_payload_size: 65516 is out of range (an integer from 20 to 65515 over IPv4 or 65535 over IPv6)",
  ]],
  ["bad-payload-ipv6-large.yaml", [
    "bad-payload-ipv6-large.yaml:20:22: targets.web.ip_payload_size: 65536 is out of range (an integer from 20 to 65515 over IPv4 or 65535 over IPv6)",
  ]],
  ["bad-payload-tcp-small.yaml", [
    "bad-payload-tcp-small.yaml:20:22: targets.web.ip_payload_size: 19 is out of range (an integer from 20 to 65515 over IPv4 or 65535 over IPv6)",
  ]],
  ["bad-payload-udp-small.yaml", [
    "bad-payload-udp-small.yaml:20:22: targets.web.ip_payload_size: 7 is out of range (an integer from 8 to 65515 over IPv4 or 65535 over IPv6)",
  ]],
  ["bad-percentile-float.yaml", [
    "bad-percentile-float.yaml:10:7: global.percentile[0]: 99.9 is not an integer (an integer from 1 to 100)",
  ]],
  ["bad-percentile-not-list.yaml", [
    "bad-percentile-not-list.yaml:9:15: global.percentile: 95 is not a list (a list of distinct integers from 1 to 100)",
  ]],
  ["bad-percentile-range.yaml", [
    "bad-percentile-range.yaml:9:20: global.percentile[1]: 101 is out of range (an integer from 1 to 100)",
  ]],
  ["bad-permit-target-auto-register.yaml", [
    "bad-permit-target-auto-register.yaml:14:34: groups.standard.permit_target_auto_register: \"no\" is not a boolean (true or false)",
  ]],
  ["bad-probe-name.yaml", [
    "bad-probe-name.yaml:3:15: global.probe_name: \"Lab Probe\" is not a valid name (a name of up to 255 lowercase letters, digits, _, - and .)",
  ]],
  ["bad-prometheus-address.yaml", [
    "bad-prometheus-address.yaml:8:23: global.prometheus_address: \"0.0.0.300\" is not an IP address (an IPv4 or IPv6 address such as 0.0.0.0 or ::)",
  ]],
  ["bad-prometheus-port.yaml", [
    "bad-prometheus-port.yaml:7:20: global.prometheus_port: 0 is out of range (an integer from 1 to 65535)",
  ]],
  ["bad-reload-conf-interval.yaml", [
    "bad-reload-conf-interval.yaml:9:25: global.reload_conf_interval: \"daily\" is not a number (an integer from 0 to 86400)",
  ]],
  ["bad-root-list.yaml", [
    "bad-root-list.yaml:2:1: a list is not a map (a map with global, groups and targets)",
  ]],
  ["bad-several-errors.yaml", [
    "bad-several-errors.yaml:4:13: global.interval: 0 is out of range (an integer from 1 to 86400)",
    "bad-several-errors.yaml:6:18: global.logging_level: \"LOUD\" is not allowed (one of CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET)",
    "bad-several-errors.yaml:14:11: groups.standard.dscp: 64 is out of range (an integer from 0 to 63)",
    "bad-several-errors.yaml:20:15: targets.web.dst_port: 70000 is out of range (an integer from 1 to 65535)",
    "bad-several-errors.yaml:21:5: targets.web.retries: unknown field (one of type, description, destination, address_family, dont_fragment, is_subnet, nb_packets, threshold, alert_level, state, timeout, dns_update_interval, auto_register_to_groups, explicit_groups, dst_port, ip_payload_size)",
  ]],
  ["bad-src-ip-conflict.yaml", [
    "bad-src-ip-conflict.yaml:12:13: groups.standard.src_ip: \"198.18.0.1\" differs from src_ipv4 \"198.18.0.2\" (src_ip is a deprecated alias of src_ipv4: keep src_ipv4 alone)",
  ]],
  ["bad-src-ipv4-is-ipv6.yaml", [
    "bad-src-ipv4-is-ipv6.yaml:12:15: groups.standard.src_ipv4: \"fd00::1\" is not an IPv4 address (an IPv4 address such as 192.0.2.1)",
  ]],
  ["bad-src-ipv4.yaml", [
    "bad-src-ipv4.yaml:12:15: groups.standard.src_ipv4: \"198.18.0.256\" is not an IPv4 address (an IPv4 address such as 192.0.2.1)",
  ]],
  ["bad-src-ipv6.yaml", [
    "bad-src-ipv6.yaml:12:15: groups.standard.src_ipv6: \"198.18.0.1\" is not an IPv6 address (an IPv6 address such as 2001:db8::1)",
  ]],
  ["bad-src-port-default-order.yaml", [
    "bad-src-port-default-order.yaml:12:5: groups.standard.src_port_z: 65001 is below src_port_a 65100 (a port no lower than src_port_a; they default to 65000 and 65001)",
  ]],
  ["bad-src-port-order.yaml", [
    "bad-src-port-order.yaml:13:17: groups.standard.src_port_z: 65000 is below src_port_a 65015 (a port no lower than src_port_a; they default to 65000 and 65001)",
  ]],
  ["bad-src-port-range.yaml", [
    "bad-src-port-range.yaml:12:17: groups.standard.src_port_a: 0 is out of range (an integer from 1 to 65535)",
  ]],
  ["bad-src-subnet-ipv4-prefix.yaml", [
    "bad-src-subnet-ipv4-prefix.yaml:12:22: groups.standard.src_subnet_ipv4: \"198.18.0.0/33\" is not an IPv4 subnet (an IPv4 subnet in CIDR notation, such as 198.18.0.0/24)",
  ]],
  ["bad-src-subnet-ipv4.yaml", [
    "bad-src-subnet-ipv4.yaml:12:22: groups.standard.src_subnet_ipv4: \"198.18.0.0\" is not an IPv4 subnet (an IPv4 subnet in CIDR notation, such as 198.18.0.0/24)",
  ]],
  ["bad-src-subnet-ipv6.yaml", [
    "bad-src-subnet-ipv6.yaml:12:22: groups.standard.src_subnet_ipv6: \"198.18.0.0/24\" is not an IPv6 subnet (an IPv6 subnet in CIDR notation, such as fd00::/120)",
  ]],
  ["bad-state.yaml", [
    "bad-state.yaml:20:12: targets.web.state: \"production\" is not allowed (\"in production\" or \"validation\")",
  ]],
  ["bad-target-list.yaml", [
    "bad-target-list.yaml:17:5: targets.web: a list is not a map (a map of target settings)",
  ]],
  ["bad-target-name.yaml", [
    "bad-target-name.yaml:16:3: targets.Web: \"Web\" is not a valid name (a name of up to 255 lowercase letters, digits, _, - and .)",
  ]],
  ["bad-target-timeout.yaml", [
    "bad-target-timeout.yaml:20:14: targets.web.timeout: -1 is out of range (a number above 0 and at most 86400)",
  ]],
  ["bad-targets-scalar.yaml", [
    "bad-targets-scalar.yaml:15:10: targets: \"none\" is not a map (a map of target names to target settings)",
  ]],
  ["bad-threshold-latency.yaml", [
    "bad-threshold-latency.yaml:21:16: targets.web.threshold.latency: \"fast\" is not a number (a number of at least 0)",
  ]],
  ["bad-threshold-loss.yaml", [
    "bad-threshold-loss.yaml:21:13: targets.web.threshold.loss: 150 is out of range (a number from 0 to 100)",
  ]],
  ["bad-threshold-not-map.yaml", [
    "bad-threshold-not-map.yaml:20:16: targets.web.threshold: 0.1 is not a map (a map of latency and/or loss to numbers)",
  ]],
  ["bad-type.yaml", [
    "bad-type.yaml:17:11: targets.web.type: \"TCPSyn\" is not allowed (one of TCPsyn, ICMPping, UDPunreachable, TWAMPlight)",
  ]],
  ["bad-unknown-explicit-groups-field.yaml", [
    "bad-unknown-explicit-groups-field.yaml:21:7: targets.web.explicit_groups.include: unknown field (one of register_to, exclude_from)",
  ]],
  ["bad-unknown-fields-everywhere.yaml", [
    "bad-unknown-fields-everywhere.yaml:20:5: targets.web.retries: unknown field (one of type, description, destination, address_family, dont_fragment, is_subnet, nb_packets, threshold, alert_level, state, timeout, dns_update_interval, auto_register_to_groups, explicit_groups, dst_port, ip_payload_size)",
    "bad-unknown-fields-everywhere.yaml:21:5: targets.web.color: unknown field (one of type, description, destination, address_family, dont_fragment, is_subnet, nb_packets, threshold, alert_level, state, timeout, dns_update_interval, auto_register_to_groups, explicit_groups, dst_port, ip_payload_size)",
  ]],
  ["bad-unknown-global-field-typo.yaml", [
    "bad-unknown-global-field-typo.yaml:9:3: global.reload_conf_intervall: unknown field, did you mean reload_conf_interval? (one of probe_name, interval, interval_packets, nb_proc, verbose, logging_level, prometheus_port, prometheus_address, dns_update_interval, reload_conf_interval, l3_raw_socket, timeout, percentile, disable_dynamic_inventories, histogram_buckets, histogram_per_destination, max_probes_per_second, per_target_series, worst_targets, shard)",
  ]],
  ["bad-unknown-global-field.yaml", [
    "bad-unknown-global-field.yaml:9:3: global.metrics_path: unknown field (one of probe_name, interval, interval_packets, nb_proc, verbose, logging_level, prometheus_port, prometheus_address, dns_update_interval, reload_conf_interval, l3_raw_socket, timeout, percentile, disable_dynamic_inventories, histogram_buckets, histogram_per_destination, max_probes_per_second, per_target_series, worst_targets, shard)",
  ]],
  ["bad-unknown-group-field.yaml", [
    "bad-unknown-group-field.yaml:14:5: groups.standard.bogus: unknown field (one of src_ipv4, src_ipv6, src_subnet_ipv4, src_subnet_ipv6, src_port_a, src_port_z, ip_payload_size, dscp, permit_target_auto_register)",
  ]],
  ["bad-unknown-target-field.yaml", [
    "bad-unknown-target-field.yaml:20:5: targets.web.retries: unknown field (one of type, description, destination, address_family, dont_fragment, is_subnet, nb_packets, threshold, alert_level, state, timeout, dns_update_interval, auto_register_to_groups, explicit_groups, dst_port, ip_payload_size)",
  ]],
  ["bad-unknown-threshold-field.yaml", [
    "bad-unknown-threshold-field.yaml:22:7: targets.web.threshold.jitter: unknown field (one of latency, loss)",
  ]],
  ["bad-unknown-top-level.yaml", [
    "bad-unknown-top-level.yaml:21:1: probes: unknown field (one of global, groups, targets, inventories)",
  ]],
  ["bad-verbose.yaml", [
    "bad-verbose.yaml:6:12: global.verbose: 2 is not allowed (0 or 1)",
  ]],
  ["bad-yaml-bad-indent.yaml", [
    "bad-yaml-bad-indent.yaml:3:15: YAML syntax error: Nested mappings are not allowed in compact mappings",
    "bad-yaml-bad-indent.yaml:3:15: YAML syntax error: Implicit keys need to be on a single line",
  ]],
  ["bad-yaml-tab-indent.yaml", [
    "bad-yaml-tab-indent.yaml:19:1: YAML syntax error: Tabs are not allowed as indentation",
  ]],
  ["bad-yaml-unclosed-flow.yaml", [
    "bad-yaml-unclosed-flow.yaml:11:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]",
  ]],
  ["bad-yaml-unclosed-quote.yaml", [
    "bad-yaml-unclosed-quote.yaml:3:15: YAML syntax error: a quoted string is never closed",
  ]],
  // The limits: each of these passed check, then broke the daemon (timers firing every
  // millisecond, a Worker out of memory every iteration, exit 70 at start, a bloated /metrics).
  ["bad-addresses-per-iteration.yaml", [
    "bad-addresses-per-iteration.yaml:15:3: targets: the targets probe 1,048,544 addresses per iteration, once per group each (at most 1,000,000 addresses per iteration: fewer targets, groups, addresses per subnet or nb_packets)",
  ]],
  ["bad-description-long.yaml", [
    "bad-description-long.yaml:20:18: targets.web.description: a text of 1,100 characters is too long (at most 1024 characters)",
  ]],
  ["bad-destination-cidr.yaml", [
    "bad-destination-cidr.yaml:18:18: targets.web.destination: \"198.18.0.0/40\" is not a valid CIDR subnet (an IP address, a hostname, a CIDR subnet or a range)",
  ]],
  ["bad-destination-range-octet.yaml", [
    "bad-destination-range-octet.yaml:18:18: targets.web.destination: \"198.18.300.1-2\" has an octet \"300\" not within 0-255 in order (an IP address, a hostname, a CIDR subnet or a range)",
  ]],
  ["bad-destination-slash8.yaml", [
    "bad-destination-slash8.yaml:18:18: targets.web.destination: \"10.0.0.0/8\" expands to 16,777,214 addresses (at most 65,536 addresses per destination: an IPv4 subnet of /16 or longer, an IPv6 one of /112 or longer, or a smaller range)",
  ]],
  ["bad-destination-wildcard.yaml", [
    "bad-destination-wildcard.yaml:18:18: targets.web.destination: \"10.*.*.*\" expands to 16,777,216 addresses (at most 65,536 addresses per destination: an IPv4 subnet of /16 or longer, an IPv6 one of /112 or longer, or a smaller range)",
  ]],
  ["bad-dns-update-interval-target.yaml", [
    "bad-dns-update-interval-target.yaml:20:26: targets.web.dns_update_interval: 604800 is out of range (an integer from 0 to 86400)",
  ]],
  ["bad-global-timeout-overflow.yaml", [
    "bad-global-timeout-overflow.yaml:9:12: global.timeout: 10000000 is out of range (a number above 0 and at most 86400)",
  ]],
  ["bad-histogram-buckets-count.yaml", [
    "bad-histogram-buckets-count.yaml:9:22: global.histogram_buckets: 65 buckets are too many (a strictly increasing list of at most 64 numbers of seconds above 0, or [] to turn histograms off)",
  ]],
  ["bad-http-refresh-interval.yaml", [
    "bad-http-refresh-interval.yaml:25:25: inventories.http.sd.refresh_interval: 2147484 is out of range (an integer from 1 to 86400)",
  ]],
  ["bad-interval-overflow.yaml", [
    "bad-interval-overflow.yaml:4:13: global.interval: 3000000 is out of range (an integer from 1 to 86400)",
  ]],
  ["bad-nb-packets-huge.yaml", [
    "bad-nb-packets-huge.yaml:20:17: targets.web.nb_packets: 2000000000 is out of range (an integer from 1 to 1000000)",
  ]],
  ["bad-nb-proc-huge.yaml", [
    "bad-nb-proc-huge.yaml:5:12: global.nb_proc: 1000000 is out of range (an integer from 1 to 64)",
  ]],
  ["bad-percentile-duplicate.yaml", [
    "bad-percentile-duplicate.yaml:9:15: global.percentile: 95 is given twice (a list of distinct integers from 1 to 100)",
  ]],
  ["bad-probe-name-long.yaml", [
    "bad-probe-name-long.yaml:3:15: global.probe_name: \"pppppppppppppppppppppppppppppppppppppppp\"... (300 characters) is not a valid name (a name of up to 255 lowercase letters, digits, _, - and .)",
  ]],
  ["bad-probes-per-iteration.yaml", [
    "bad-probes-per-iteration.yaml:15:3: targets: the targets send 12,000,000 probes per iteration; the most: \"t1\", 2,000,000 (at most 10,000,000 probes per iteration: fewer targets, groups, addresses per subnet or nb_packets)",
  ]],
  ["bad-range-family.yaml", [
    "bad-range-family.yaml:21:21: targets.web.address_family: \"ipv6\" does not match destination \"198.18.0.1-20\" (ipv4, the destination's family, or no address_family)",
  ]],
  ["bad-reload-conf-interval-overflow.yaml", [
    "bad-reload-conf-interval-overflow.yaml:9:25: global.reload_conf_interval: 2147484 is out of range (an integer from 0 to 86400)",
  ]],
  ["bad-src-subnet-ipv6-size.yaml", [
    "bad-src-subnet-ipv6-size.yaml:14:22: groups.standard.src_subnet_ipv6: \"fd00::/64\" expands to 18,446,744,073,709,551,616 addresses (at most 65,536 addresses: an IPv6 prefix of /112 or longer)",
  ]],

];

test("every bad-*.yaml fixture has a row in the table, and every row a fixture", () => {
  const files = readdirSync(FIXTURES).filter((f) => f.startsWith("bad-")).sort();
  expect(INVALID.map(([file]) => file).sort()).toEqual(files);
});

test.each(INVALID)("%s is rejected with exactly the expected lines", async (file, lines) => {
  expect(issuesOf(await parseFixture(file))).toEqual(lines);
});

test("a file with several faults reports all of them at once, in file order", async () => {
  const lines = issuesOf(await parseFixture("bad-several-errors.yaml"));
  expect(lines).toHaveLength(5);
  const positions = lines.map((l) => l.split(":").slice(1, 3).map(Number));
  expect(positions).toEqual([...positions].sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0) || (a[1] ?? 0) - (b[1] ?? 0)));
});

// --- valid files ---

test("the original README's example config is accepted as is", async () => {
  const { config, warnings } = configOf(await parseFixture("original-readme.yaml"));
  expect(warnings).toEqual([]);
  expect(config.global.probe_name).toBe("lab");
  expect(config.global.nb_proc).toBe(8);
  expect(config.groups.standard).toEqual({
    src_port_a: 65100,
    src_port_z: 65199,
    dscp: 0,
    permit_target_auto_register: true,
    src_ipv4: undefined,
  });
  expect(Object.keys(config.targets)).toEqual(["google_ipv4", "google_ipv6", "bing"]);
  const bing = config.targets.bing;
  expect(bing?.type).toBe("TCPsyn");
  expect(bing?.type === "TCPsyn" ? bing.dst_port : undefined).toBe(443);
  expect(bing?.address_family).toBeUndefined();
});

test("a minimal file gets every default", async () => {
  const { config, warnings } = configOf(await parseFixture("minimal.yaml"));
  expect(warnings).toEqual([]);
  expect(config).toEqual({
    global: {
      probe_name: "minimal",
      interval: 30,
      interval_packets: 0,
      nb_proc: 1,
      verbose: 0,
      logging_level: "INFO",
      prometheus_port: 8000,
      prometheus_address: "0.0.0.0",
      dns_update_interval: 0,
      reload_conf_interval: 0,
      l3_raw_socket: false,
      timeout: 3600,
      percentile: [95, 50],
      disable_dynamic_inventories: [],
      histogram_buckets: [...DEFAULT_HISTOGRAM_BUCKETS],
      histogram_per_destination: false,
      max_probes_per_second: 100000,
      per_target_series: true,
      worst_targets: 10,
    },
    groups: {
      default: { src_port_a: 65000, src_port_z: 65001, dscp: 0, permit_target_auto_register: true, src_ipv4: undefined },
    },
    targets: {
      tcp: {
        type: "TCPsyn",
        destination: "198.18.0.1",
        dst_port: 443,
        dont_fragment: true,
        is_subnet: false,
        nb_packets: 1,
        alert_level: "no_alert",
        timeout: 1,
        auto_register_to_groups: true,
        explicit_groups: { register_to: [], exclude_from: [] },
      },
      icmp: {
        type: "ICMPping",
        destination: "198.18.0.2",
        dont_fragment: true,
        is_subnet: false,
        nb_packets: 1,
        alert_level: "no_alert",
        timeout: 1,
        auto_register_to_groups: true,
        explicit_groups: { register_to: [], exclude_from: [] },
      },
      udp: {
        type: "UDPunreachable",
        destination: "198.18.0.3",
        dst_port: 33434,
        dont_fragment: true,
        is_subnet: false,
        nb_packets: 1,
        alert_level: "no_alert",
        timeout: 1,
        auto_register_to_groups: true,
        explicit_groups: { register_to: [], exclude_from: [] },
      },
    },
  });
});

test("defaults are fresh objects: changing one config's list leaves the next parse alone", async () => {
  const first = configOf(await parseFixture("minimal.yaml")).config;
  first.global.percentile.push(99);
  first.global.histogram_buckets.length = 0;
  const second = configOf(await parseFixture("minimal.yaml")).config;
  expect(second.global.percentile).toEqual([95, 50]);
  expect(second.global.histogram_buckets).toEqual([...DEFAULT_HISTOGRAM_BUCKETS]);
});

test("targets without explicit_groups share one frozen empty default; given ones are their own", () => {
  const text =
    "global: {probe_name: p, interval: 30, nb_proc: 1, logging_level: INFO, prometheus_port: 8000, dns_update_interval: 0}\n" +
    "groups: {g: {}}\n" +
    "targets:\n" +
    "  a: {type: ICMPping, destination: 198.18.0.1}\n" +
    "  b: {type: ICMPping, destination: 198.18.0.2}\n" +
    "  c: {type: ICMPping, destination: 198.18.0.3, explicit_groups: {}}\n" +
    "  d: {type: ICMPping, destination: 198.18.0.4, explicit_groups: {register_to: [g]}}\n";
  const { targets } = configOf(parseConfigText(text, "t.yaml")).config;
  const [a, b, c, d] = ["a", "b", "c", "d"].map((name) => targets[name]!.explicit_groups);
  expect(a).toEqual({ register_to: [], exclude_from: [] });
  // One value for every target that leaves the field out (100,000 copies cost a third of a large
  // file's load); frozen, so that no code can change one target's groups through it.
  expect(b).toBe(a!);
  expect(Object.isFrozen(a) && Object.isFrozen(a!.register_to) && Object.isFrozen(a!.exclude_from)).toBe(true);
  expect(() => (a!.register_to as string[]).push("g")).toThrow();
  expect(c).toEqual({ register_to: [], exclude_from: [] });
  expect(c).not.toBe(a!);
  expect(d).toEqual({ register_to: ["g"], exclude_from: [] });
});

test("src_ip is read as src_ipv4, with a deprecation warning", async () => {
  const { config, warnings } = configOf(await parseFixture("src-ip-alias.yaml"));
  expect(config.groups.legacy?.src_ipv4).toBe("198.18.0.10");
  expect(config.groups["both-same"]?.src_ipv4).toBe("198.18.0.11");
  expect(Object.keys(config.groups.legacy ?? {})).not.toContain("src_ip");
  expect(warnings).toEqual([
    "src-ip-alias.yaml:12:5: warning: groups.legacy.src_ip: deprecated; write src_ipv4 instead",
    "src-ip-alias.yaml:16:5: warning: groups.both-same.src_ip: deprecated; write src_ipv4 instead",
  ]);
});

test("unknown explicit groups, targets in no group and duplicate keys are warnings, in file order", async () => {
  const { config, warnings } = configOf(await parseFixture("warnings.yaml"));
  expect(warnings).toEqual([
    'warnings.yaml:23:21: warning: targets.to-a-ghost.explicit_groups.register_to[0]: group "ghost" does not exist; ignored',
    "warnings.yaml:24:3: warning: targets.alone: belongs to no group, so it is not probed",
    "warnings.yaml:28:3: warning: targets.excluded: belongs to no group, so it is not probed",
    'warnings.yaml:32:28: warning: targets.excluded.explicit_groups.exclude_from[1]: group "nowhere" does not exist; ignored',
    "warnings.yaml:36:3: warning: targets.twice: duplicate key; this last one wins",
  ]);
  // As PyYAML did for the original, the last of two equal keys wins.
  expect(config.targets.twice?.destination).toBe("198.18.0.5");
});

const GLOBAL_LINE =
  "global: {probe_name: t, interval: 30, nb_proc: 1, logging_level: INFO, prometheus_port: 8000, dns_update_interval: 0}";

test("YAML 1.1, as PyYAML reads it: yes/on are booleans", () => {
  const text = [
    "global:",
    "  probe_name: yaml11",
    "  interval: 30",
    "  nb_proc: 1",
    "  logging_level: INFO",
    "  prometheus_port: 8000",
    "  dns_update_interval: 300",
    "  l3_raw_socket: yes",
    "groups:",
    "  g:",
    "    permit_target_auto_register: off",
  ].join("\n");
  const { config } = configOf(parseConfigText(text, "y.yaml"));
  expect(config.global.l3_raw_socket).toBe(true);
  expect(config.groups.g?.permit_target_auto_register).toBe(false);
});

test("YAML merge keys (<<) reuse a target's settings", () => {
  const text = [
    GLOBAL_LINE,
    "groups: {g: {}}",
    "targets:",
    "  a: &web",
    "    type: TCPsyn",
    "    destination: 198.18.0.1",
    "    dst_port: 443",
    "  b:",
    "    <<: *web",
    "    destination: 198.18.0.2",
  ].join("\n");
  const { config } = configOf(parseConfigText(text, "m.yaml"));
  const b = config.targets.b;
  expect(b?.type === "TCPsyn" ? [b.dst_port, b.destination] : undefined).toEqual([443, "198.18.0.2"]);
});

test("a fault in a map brought in by << is reported where the anchored map says it", () => {
  const text = [
    GLOBAL_LINE,
    "groups: {g: {}}",
    "targets:",
    "  a: &common",
    "    type: ICMPping",
    "    destination: 198.18.0.1",
    "    nb_packets: 0",
    "  b:",
    "    <<: *common",
    "    destination: 198.18.0.2",
  ].join("\n");
  expect(issuesOf(parseConfigText(text, "m.yaml"))).toEqual([
    "m.yaml:7:17: targets.a.nb_packets: 0 is out of range (an integer from 1 to 1000000)",
    "m.yaml:7:17: targets.b.nb_packets: 0 is out of range (an integer from 1 to 1000000)",
  ]);
});

test("edge cases of the document as a whole", () => {
  const issues = (text: string) => issuesOf(parseConfigText(text, "x.yaml"));
  expect(issues("hello")).toEqual(['x.yaml:1:1: "hello" is not a map (a map with global, groups and targets)']);
  expect(issues(`${GLOBAL_LINE}\ngroups: {g: {}}\n---\nfoo: 1\n`)).toEqual([
    "x.yaml:3:1: YAML syntax error: the file holds more than one document (a second --- line)",
  ]);
  expect(issues(`${GLOBAL_LINE}\ngroups:\n`)).toEqual([
    "x.yaml:2:1: groups: the value is empty (a map of group names to group settings)",
  ]);
  // Nine aliases of nine aliases... would expand to 9^9 items: refused at the alias that would
  // take it past the document's size plus a million values, not expanded.
  let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n";
  for (let i = 1; i < 9; i++) bomb += `b${i}: &a${i} [${Array(9).fill(i === 1 ? "*a" : `*a${i - 1}`).join(", ")}]\n`;
  expect(issues(bomb)).toEqual([
    "x.yaml:7:10: YAML cannot be expanded: its aliases add more than 1,000,100 values (as many as the document holds, plus 1,000,000)",
  ]);
});

test("aliases: many uses of one anchor pass; a missing anchor, a cycle and deep nesting are placed", () => {
  // 1,000 targets merging the same settings: refused before (yaml's toJS allowed 100 uses of an anchor).
  const targets = Array.from({ length: 1000 }, (_, i) => `  t${i}: {<<: *icmp, destination: 198.18.${i >> 8}.${i & 255}}`);
  const text = `${GLOBAL_LINE}\ngroups: {g: {}}\ntargets:\n  base: &icmp {type: ICMPping, destination: 198.18.9.9, nb_packets: 2}\n${targets.join("\n")}\n`;
  const many = parseConfigText(text, "a.yaml");
  expect(many.ok ? Object.values(many.config.targets).filter((t) => t.type === "ICMPping" && t.nb_packets === 2).length : many.issues.map(formatIssue)).toBe(1001);
  const issues = (t: string) => issuesOf(parseConfigText(t, "a.yaml"));
  expect(issues(`${GLOBAL_LINE}\ngroups: *nowhere\n`)).toEqual(["a.yaml:2:9: YAML cannot be expanded: alias *nowhere names no anchor before it"]);
  expect(issues(`${GLOBAL_LINE}\ngroups: &g {a: *g}\n`)).toEqual(["a.yaml:2:16: YAML cannot be expanded: alias *g is inside the node it names"]);
  expect(issues(`${GLOBAL_LINE}\ngroups: ${"[".repeat(300)}${"]".repeat(300)}\n`)).toEqual([
    "a.yaml:2:265: YAML cannot be expanded: the document nests deeper than 256 levels",
  ]);
});

test("an empty targets map means no targets; .inf is no timeout", () => {
  const { config } = configOf(parseConfigText(`${GLOBAL_LINE}\ngroups: {g: {}}\ntargets:\n`, "x.yaml"));
  expect(config.targets).toEqual({});
  const text = `${GLOBAL_LINE}\ngroups: {g: {}}\ntargets:\n  x: {type: ICMPping, destination: ::1, timeout: .inf}\n`;
  expect(issuesOf(parseConfigText(text, "x.yaml"))).toEqual([
    "x.yaml:4:50: targets.x.timeout: Infinity is out of range (a number above 0 and at most 86400)",
  ]);
});

const GLOBAL = (extra = "", level = "INFO") => `global:
  probe_name: lab
  interval: 30
  nb_proc: 1
  logging_level: ${level}
  prometheus_port: 8000
  dns_update_interval: 300
${extra}groups:
  standard: {}
`;

test("is_subnet: true on a single address or a hostname probes that one address, as the original did, with a warning", () => {
  const text = `${GLOBAL()}targets:
  one:
    type: ICMPping
    destination: 198.18.5.1
    is_subnet: true
  named:
    type: ICMPping
    destination: router.example
    is_subnet: true
  racks:
    type: ICMPping
    destination: 198.18.3.0/26
    is_subnet: true
`;
  const { config, warnings } = configOf(parseConfigText(text, "x.yaml"));
  expect(Object.values(config.targets).map((t) => t.is_subnet)).toEqual([true, true, true]);
  expect(warnings).toEqual([
    'x.yaml:14:16: warning: targets.one.is_subnet: destination "198.18.5.1" is a single address, so is_subnet: true changes nothing',
    'x.yaml:18:16: warning: targets.named.is_subnet: destination "router.example" is a hostname (one address), so is_subnet: true changes nothing',
  ]);
});

test("verbose: 1 with a logging_level above INFO is a warning: its lines are INFO lines, which that level hides", () => {
  const target = "targets:\n  one: {type: ICMPping, destination: 198.18.5.1}\n";
  const warningsOf = (verbose: string, level: string) => configOf(parseConfigText(`${GLOBAL(verbose, level)}${target}`, "x.yaml")).warnings;
  expect(warningsOf("  verbose: 1\n", "WARNING")).toEqual([
    "x.yaml:8:12: warning: global.verbose: its per-target lines are INFO lines, which logging_level WARNING leaves out",
  ]);
  expect(warningsOf("  verbose: 1\n", "CRITICAL")).toEqual([
    "x.yaml:8:12: warning: global.verbose: its per-target lines are INFO lines, which logging_level CRITICAL leaves out",
  ]);
  expect(warningsOf("  verbose: 1\n", "INFO")).toEqual([]);
  expect(warningsOf("  verbose: 1\n", "DEBUG")).toEqual([]);
  expect(warningsOf("  verbose: 0\n", "ERROR")).toEqual([]);
  expect(warningsOf("", "ERROR")).toEqual([]);
});

test("the commented example sets every field and validates without warnings", async () => {
  const text = await fixture("example.yaml");
  expect(text.split("\n")[0]).toBe("# yaml-language-server: $schema=../../../schema_config.yaml");
  const { warnings } = configOf(parseConfigText(text, "example.yaml"));
  expect(warnings).toEqual([]);
});

test("the built-in default config validates: six loopback targets in the local group", () => {
  const { config, warnings } = configOf(loadDefaultConfig());
  expect(warnings).toEqual([]);
  expect(config.global).toMatchObject({
    probe_name: "netprobify-selftest",
    interval: 10,
    nb_proc: 1,
    logging_level: "INFO",
    prometheus_port: 8000,
    dns_update_interval: 300,
  });
  expect(config.groups).toEqual({
    local: { src_port_a: 65000, src_port_z: 65015, dscp: 0, permit_target_auto_register: true, src_ipv4: undefined },
  });
  const summary = Object.values(config.targets).map((t) => [t.type, t.destination, t.dst_port, t.nb_packets, t.timeout]);
  expect(summary).toEqual([
    ["TCPsyn", "127.0.0.1", 22, 10, 1],
    ["TCPsyn", "::1", 22, 10, 1],
    ["ICMPping", "127.0.0.1", undefined, 10, 1],
    ["ICMPping", "::1", undefined, 10, 1],
    ["UDPunreachable", "127.0.0.1", 33434, 10, 1],
    ["UDPunreachable", "::1", 33434, 10, 1],
  ]);
});

// --- files and the check command ---

test("check: a valid file exits 0 and prints its warnings and a summary", async () => {
  const path = join(FIXTURES, "warnings.yaml");
  const { exitCode, lines } = await checkFile(path);
  expect(exitCode).toBe(0);
  expect(lines).toHaveLength(6);
  expect(lines[0]).toBe(`${path}:23:21: warning: targets.to-a-ghost.explicit_groups.register_to[0]: group "ghost" does not exist; ignored`);
  expect(lines.at(-1)).toBe(`${path}: valid, 2 groups and 4 targets`);
  expect(await checkFile(join(FIXTURES, "original-readme.yaml"))).toEqual({
    exitCode: 0,
    lines: [`${join(FIXTURES, "original-readme.yaml")}: valid, 1 group and 3 targets`],
  });
});

test("check: an invalid file exits 65 with one line per issue", async () => {
  const path = join(FIXTURES, "bad-dscp.yaml");
  expect(await checkFile(path)).toEqual({
    exitCode: 65,
    lines: [`${path}:14:11: groups.standard.dscp: 64 is out of range (an integer from 0 to 63)`],
  });
});

test("check: a missing file or a directory exits 66 with one line", async () => {
  const missing = join(FIXTURES, "no-such-file.yaml");
  expect(await checkFile(missing)).toEqual({ exitCode: 66, lines: [`${missing}: cannot read the file: no such file`] });
  expect(await checkFile(FIXTURES)).toEqual({ exitCode: 66, lines: [`${FIXTURES}: cannot read the file: it is a directory`] });
});

test("loadConfigFile tells an unreadable file from an invalid one", async () => {
  expect(await loadConfigFile("/nonexistent/netprobify.yaml")).toEqual({
    ok: false,
    unreadable: "/nonexistent/netprobify.yaml: cannot read the file: no such file",
  });
  const invalid = await loadConfigFile(join(FIXTURES, "bad-verbose.yaml"));
  expect("issues" in invalid && invalid.issues.length).toBe(1);
});

test("findConfigFile prefers netprobify.yaml, then config.yaml, else nothing (the built-in default)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "netprobify-config-"));
  try {
    expect(await findConfigFile(dir)).toBeUndefined();
    await writeFile(join(dir, "config.yaml"), "");
    expect(await findConfigFile(dir)).toBe(join(dir, "config.yaml"));
    await writeFile(join(dir, "netprobify.yaml"), "");
    expect(await findConfigFile(dir)).toBe(join(dir, "netprobify.yaml"));
  } finally {
    await rm(dir, { recursive: true });
  }
});

test("formatIssue leaves out an empty path and an empty expectation", () => {
  const base = { file: "f.yaml", line: 3, col: 7, path: "", message: "YAML syntax error: x", expected: "" };
  expect(formatIssue(base)).toBe("f.yaml:3:7: YAML syntax error: x");
  expect(formatIssue({ ...base, path: "global.interval", message: "0 is out of range", expected: "an integer of at least 1" })).toBe(
    "f.yaml:3:7: global.interval: 0 is out of range (an integer of at least 1)",
  );
});

test("formatIssues: every issue up to the limit, then one line counting the rest", () => {
  const issue = (line: number) => ({ file: "f.yaml", line, col: 1, path: "targets.t", message: "bad", expected: "" });
  const issues = Array.from({ length: 1_234 }, (_, i) => issue(i + 1));
  expect(formatIssues(issues.slice(0, 3), 3)).toEqual(["f.yaml:1:1: targets.t: bad", "f.yaml:2:1: targets.t: bad", "f.yaml:3:1: targets.t: bad"]);
  expect(formatIssues(issues.slice(0, 4), 3)).toEqual([...formatIssues(issues.slice(0, 3), 3), "... and 1 more problem"]);
  const lines = formatIssues(issues);
  expect(lines.length).toBe(MAX_SHOWN_ISSUES + 1);
  expect(lines[MAX_SHOWN_ISSUES - 1]).toBe(`f.yaml:${MAX_SHOWN_ISSUES}:1: targets.t: bad`);
  expect(lines.at(-1)).toBe("... and 1,134 more problems");
  expect(formatIssues([])).toEqual([]);
});

test("check: an invalid file with more problems than MAX_SHOWN_ISSUES prints them, then the count, and exits 65", async () => {
  const dir = await mkdtemp(join(tmpdir(), "netprobify-many-"));
  try {
    const path = join(dir, "many.yaml");
    const targets = Array.from({ length: MAX_SHOWN_ISSUES + 5 }, (_, i) => `  t${i}: {type: TCPsyn, destination: 198.18.0.1, dst_port: 0}`);
    await writeFile(path, `${GLOBAL_LINE}\ngroups: {g: {}}\ntargets:\n${targets.join("\n")}\n`);
    const outcome = await checkFile(path);
    expect(outcome.exitCode).toBe(65);
    expect(outcome.lines.length).toBe(MAX_SHOWN_ISSUES + 1);
    expect(outcome.lines[0]).toBe(`${path}:4:57: targets.t0.dst_port: 0 is out of range (an integer from 1 to 65535)`);
    expect(outcome.lines.at(-1)).toBe("... and 5 more problems");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
