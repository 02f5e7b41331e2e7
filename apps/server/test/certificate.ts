import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { toolPath } from "./tools.js";

/** A self-signed certificate's files and the certificate itself (to trust as a CA). */
export interface TestCertificate {
  certFile: string;
  keyFile: string;
  /** The PEM certificate, for a client's `ca`. */
  ca: Buffer;
}

/**
 * Writes a one-day self-signed certificate for localhost and 127.0.0.1 into `dir` (cert.pem,
 * key.pem) with Debian's openssl (a suite that calls it declares `skipWithout("openssl")`).
 */
export function createTestCertificate(dir: string): TestCertificate {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync(
    toolPath("openssl"),
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ],
    { stdio: "ignore" },
  );
  return { certFile, keyFile, ca: readFileSync(certFile) };
}
