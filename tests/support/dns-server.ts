/**
 * A tiny DNS server for the dns inventory's tests, on UDP and TCP of one port (loopback by
 * default): each question is handed to a function that says what to answer, including what no
 * real server would (a wrong ID, a malformed message, silence, SERVFAIL). UDP answers longer than
 * `udpLimit` bytes are sent truncated (TC set, no records), as a server does, so that the client
 * must ask again over TCP. Every query is recorded with its transport.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server, type Socket } from "node:net";
import { CLASS_IN, decodeMessage, encodeMessage, RCODE_NOERROR, type EncodeRecord, type Question } from "../../src/inventory/dns-wire.ts";

export type Transport = "udp" | "tcp";

/** What to answer one question with. */
export type Reply =
  /** A response: the records and code (NOERROR by default). */
  | { readonly rcode?: number; readonly answers?: readonly EncodeRecord[]; readonly tc?: boolean; readonly id?: number; readonly question?: Question }
  /** Exactly these bytes (the handler builds them, from the query's ID if it wants). */
  | { readonly raw: Uint8Array | readonly Uint8Array[] }
  /** No answer at all. */
  | { readonly drop: true };

export type Handler = (question: Question, transport: Transport, id: number) => Reply;

export interface SeenQuery {
  readonly name: string;
  readonly type: number;
  readonly transport: Transport;
}

export class TestDnsServer {
  private constructor(
    readonly host: string,
    readonly port: number,
    /** Every query received, in order. */
    readonly queries: SeenQuery[],
    private readonly udp: UdpSocket,
    private readonly tcp: Server,
    private readonly connections: Set<Socket>,
  ) {}

  /** "127.0.0.1:PORT", as the inventory's servers option takes it. */
  get address(): string {
    return this.host.includes(":") ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /** Queries of `name` (case-insensitive) over `transport`, or over both. */
  count(name: string, transport?: Transport): number {
    return this.queries.filter((q) => q.name.toLowerCase() === name.toLowerCase() && (!transport || q.transport === transport)).length;
  }

  static async start(handler: () => Handler, opts: { host?: string; udpLimit?: number } = {}): Promise<TestDnsServer> {
    const host = opts.host ?? "127.0.0.1";
    const udpLimit = opts.udpLimit ?? 1232;
    // The same port number on UDP and TCP: take a UDP port, then try it on TCP; again if taken.
    for (let tries = 0; ; tries++) {
      const udp = createSocket(host.includes(":") ? "udp6" : "udp4");
      await new Promise<void>((done, fail) => {
        udp.once("error", fail);
        udp.bind(0, host, () => done());
      });
      const port = udp.address().port;
      const connections = new Set<Socket>();
      const queries: SeenQuery[] = [];
      const respond = (bytes: Uint8Array, transport: Transport): Uint8Array[] => {
        const q = decodeMessage(bytes);
        if (!q.ok || q.message.questions.length !== 1) return [];
        const question = q.message.questions[0]!;
        queries.push({ name: question.name, type: question.type, transport });
        const reply = handler()(question, transport, q.message.header.id);
        if ("drop" in reply) return [];
        if ("raw" in reply) return Array.isArray(reply.raw) ? [...reply.raw] : [reply.raw as Uint8Array];
        const message = {
          id: reply.id ?? q.message.header.id,
          qr: true,
          rd: q.message.header.rd,
          ra: true,
          aa: true,
          rcode: reply.rcode ?? RCODE_NOERROR,
          questions: [reply.question ?? { ...question, class: CLASS_IN }],
        };
        const full = encodeMessage({ ...message, tc: reply.tc, answers: reply.answers ?? [] });
        if (transport === "udp" && full.length > udpLimit) return [encodeMessage({ ...message, tc: true })];
        return [full];
      };
      udp.on("message", (data, from) => {
        for (const out of respond(new Uint8Array(data), "udp")) udp.send(out, from.port, from.address);
      });
      const tcp = createServer((socket) => {
        connections.add(socket);
        socket.on("close", () => connections.delete(socket));
        socket.on("error", () => socket.destroy());
        let pending = Buffer.alloc(0);
        socket.on("data", (chunk: Buffer) => {
          pending = Buffer.concat([pending, chunk]);
          while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
            const length = pending.readUInt16BE(0);
            const query = new Uint8Array(pending.subarray(2, 2 + length));
            pending = pending.subarray(2 + length);
            for (const out of respond(query, "tcp")) {
              const prefix = Buffer.alloc(2);
              prefix.writeUInt16BE(Math.min(out.length, 0xffff));
              socket.write(Buffer.concat([prefix, out]));
            }
          }
        });
      });
      const listening = await new Promise<boolean>((done) => {
        tcp.once("error", () => done(false));
        tcp.listen(port, host, () => done(true));
      });
      if (!listening) {
        udp.close();
        if (tries > 20) throw new Error("no port free on both UDP and TCP");
        continue;
      }
      return new TestDnsServer(host, port, queries, udp, tcp, connections);
    }
  }

  async stop(): Promise<void> {
    try {
      this.udp.close();
    } catch {
      // Closed already.
    }
    for (const socket of this.connections) socket.destroy();
    await new Promise<void>((done) => this.tcp.close(() => done()));
  }
}
