/**
 * PGlite's WebAssembly (a whole Postgres, 9 MB), compiled once per process and shared by every
 * PGlite the process opens (each instance still gets its own memory).
 *
 * `bin/certfleet.js` starts this compile before it loads the CLI, for the commands that open the
 * embedded database: V8 compiles WebAssembly on background threads, so the compile overlaps the
 * loading of the service's code instead of following it. The bundled CLI imports this same file
 * (it is left out of the bundle), so both see one compile.
 */
import { readFile } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';

let compiled: Promise<WebAssembly.Module> | undefined;

/** The compiled module (the first call starts the compile; every later call shares it). */
export function pgliteWasmModule(): Promise<WebAssembly.Module> {
  compiled ??= readFile(new URL('pglite.wasm', import.meta.resolve('@electric-sql/pglite'))).then((bytes) => WebAssembly.compile(bytes));
  return compiled;
}

/**
 * V8's optimising compiler spent about 1.7 s of CPU on PGlite at every start of the service (a
 * restart: 4.8 -> 3.1 s of CPU with the baseline compiler alone), while the service's queries ran
 * as fast without it (2,000 inserts and a scan: 176-189 ms against 178-271 ms, same machine). So
 * the embedded database of a service process runs on V8's baseline compiler. Set before the module
 * is compiled; it touches no other code (there is no other WebAssembly in the process).
 */
export function useBaselineWasmCompiler(): void {
  setFlagsFromString('--liftoff-only');
}
