/** A raw TCP client for requests no HTTP library would send: bytes out, answers parsed as they come. */

import { connect, type Socket } from "node:net";
import { expect } from "vitest";
import { CATALOGUE } from "../src/http/errors.ts";
import { failure, withoutDetail } from "./helpers.ts";

/** One HTTP answer read off the wire. */
export interface RawAnswer {
  readonly status: number;
  /** Header names in lower case; a repeated header keeps its last value. */
  readonly headers: Readonly<Record<string, string>>;
  readonly text: string;
}

const WAIT_MS = 5_000;

/** A connection that sends raw bytes and reads answers one at a time (100 Continue counts as one). */
export class RawClient {
  readonly socket: Socket;
  private received = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(port: number, localAddress?: string) {
    this.socket = connect({ port, host: "127.0.0.1", ...(localAddress === undefined ? {} : { localAddress }) });
    this.socket.on("data", (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake?.();
    });
    this.socket.on("close", () => {
      this.ended = true;
      this.wake?.();
    });
    this.socket.on("error", () => undefined); // a reset shows as 'close'
  }

  send(bytes: string | Buffer): this {
    this.socket.write(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
    return this;
  }

  /** Half-closes: the client has nothing more to send. */
  end(): this {
    this.socket.end();
    return this;
  }

  /** The next complete answer; fails if the connection closes first or nothing comes within 5 s. */
  async next(): Promise<RawAnswer> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const answer = this.take();
      if (answer !== undefined) return answer;
      if (this.ended) throw new Error(`closed without a (complete) answer; left: ${JSON.stringify(this.received.toString("latin1"))}`);
      if (Date.now() > deadline) throw new Error(`no answer within ${WAIT_MS} ms; got: ${JSON.stringify(this.received.toString("latin1"))}`);
      await this.waitForData(deadline);
    }
  }

  /** Resolves once the server has closed the connection, with whatever it sent that was not read as an answer. */
  async closed(): Promise<string> {
    const deadline = Date.now() + WAIT_MS;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error(`still open after ${WAIT_MS} ms`);
      await this.waitForData(deadline);
    }
    return this.received.toString("latin1");
  }

  destroy(): void {
    this.socket.destroy();
  }

  private waitForData(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, deadline - Date.now()) + 1);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private take(): RawAnswer | undefined {
    const end = this.received.indexOf("\r\n\r\n");
    if (end === -1) return undefined;
    const [statusLine = "", ...lines] = this.received.subarray(0, end).toString("latin1").split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1] ?? NaN);
    const length = status === 100 ? 0 : Number(headers["content-length"] ?? NaN);
    if (!Number.isInteger(length)) throw new Error(`an answer without Content-Length: ${JSON.stringify(statusLine)}`);
    if (this.received.length < end + 4 + length) return undefined;
    const text = this.received.subarray(end + 4, end + 4 + length).toString();
    this.received = this.received.subarray(end + 4 + length);
    return { status, headers, text };
  }
}

/** Sends one request on a fresh connection and returns its answer (the connection is then dropped). */
export async function rawOnce(port: number, bytes: string | Buffer, localAddress?: string): Promise<RawAnswer> {
  const client = new RawClient(port, localAddress).send(bytes);
  try {
    return await client.next();
  } finally {
    client.destroy();
  }
}

/** An answer from either client: RawClient or helpers' call(). */
type AnyAnswer = Pick<RawAnswer, "status" | "text"> & { readonly headers: Readonly<Record<string, string | string[] | undefined>> };

/** Asserts an answer is exactly the catalogue's envelope for `code`, with its status and headers. */
export function expectFailure(answer: AnyAnswer, code: number): void {
  const entry = CATALOGUE.find((e) => e.code === code);
  if (entry === undefined) throw new Error(`no catalogue entry ${code}`);
  expect({ status: answer.status, text: withoutDetail(answer.text) }).toEqual({ status: entry.status, text: failure(code, entry.message) });
  expect(answer.headers["content-type"]).toBe("application/json");
  expect(answer.headers["content-length"]).toBe(String(Buffer.byteLength(answer.text)));
}
