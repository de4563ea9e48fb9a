import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ErrorCode } from './error-codes.ts';
import { CandorError, isCandorError, type ErrorDetails } from './errors.ts';

/**
 * Writes that must be whole or not at all, for the files Candor relies on outside the database (the key file, the
 * deletion ledger, the server's pid file, an import's report). write(2) may write fewer bytes than asked (a nearly
 * full disk, a file size limit), so every write here loops until all is written and fails, coded, when the system
 * takes no more; nothing torn is left behind as if it had been written.
 */

/** The write system call as `fs.writeSync` makes it for a buffer: the number of bytes written, maybe fewer than asked. */
export type WriteFunction = (fd: number, buffer: Uint8Array, offset: number, length: number) => number;

/** How a durable write reports a failure, and (for tests) the write call it uses. */
export interface DurableWriteOptions {
  /** The code of the CandorError thrown on any failure; details get `file` and `reason` (an errno code such as ENOSPC). */
  code: ErrorCode;
  details?: ErrorDetails;
  write?: WriteFunction;
}

const systemWrite: WriteFunction = (fd, buffer, offset, length) => writeSync(fd, buffer, offset, length);

const bytesOf = (data: string | Uint8Array): Uint8Array => (typeof data === 'string' ? Buffer.from(data, 'utf8') : data);

/** The reason a failure gives: the errno code, or what the check found. */
function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : 'write_failed';
}

function failure(path: string, options: DurableWriteOptions, error: unknown): CandorError {
  if (isCandorError(error, options.code)) return error;
  return new CandorError(options.code, { ...options.details, file: path, reason: reasonOf(error) }, { cause: error });
}

/** An errno-shaped error, for the checks made here. */
function errnoError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/** Writes every byte at the file's position, looping on short writes; ENOSPC when a write takes nothing. */
export function writeAll(fd: number, data: string | Uint8Array, write: WriteFunction = systemWrite): void {
  const bytes = bytesOf(data);
  let offset = 0;
  while (offset < bytes.length) {
    const written = write(fd, bytes, offset, bytes.length - offset);
    // write(2) answers 0 (or nothing sensible) only when it cannot go on: a full device, in effect.
    if (!Number.isSafeInteger(written) || written <= 0 || written > bytes.length - offset) throw errnoError('ENOSPC', `write made no progress at byte ${offset} of ${bytes.length}`);
    offset += written;
  }
}

/** fsyncs a directory, so that a file created or renamed in it survives a crash. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces `path` atomically: writes a temporary file beside it (created with `mode`, exclusively), fsyncs it, reads
 * it back and checks it holds exactly `data` (then `verify`, which may parse it), renames it over `path` and fsyncs
 * the directory. On any failure the temporary file is removed and `path` is left as it was.
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: DurableWriteOptions & { temporary: string; mode?: number; verify?: (temporary: string) => void },
): void {
  const bytes = bytesOf(data);
  const { temporary } = options;
  try {
    const fd = openSync(temporary, 'wx', options.mode ?? 0o600);
    try {
      writeAll(fd, bytes, options.write);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (!Buffer.from(bytes).equals(readFileSync(temporary))) throw errnoError('EIO', 'the file read back differs from what was written');
    options.verify?.(temporary);
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw failure(path, options, error);
  }
  try {
    fsyncDirectory(dirname(path));
  } catch (error) {
    throw failure(path, options, error);
  }
}

/** The file's length, for cutting it back after a failed append. */
function lengthOf(fd: number, path: string, options: DurableWriteOptions): number {
  try {
    return fstatSync(fd).size;
  } catch (error) {
    throw failure(path, options, error);
  }
}

/** Cuts the file back to `length` after a failed append; best effort, since readers tell a torn last line anyway. */
function cutBack(fd: number, length: number): void {
  try {
    ftruncateSync(fd, length);
  } catch {
    // The truncation failed too: what follows `length` is a last line without its newline.
  }
}

/**
 * Appends `data` to the open file `fd` whole or not at all: on a failure the file is cut back to the length it had,
 * so that no partial record stays at its end, and the coded error is thrown.
 */
export function appendWhole(fd: number, path: string, data: string | Uint8Array, options: DurableWriteOptions): void {
  const before = lengthOf(fd, path, options);
  try {
    writeAll(fd, data, options.write);
  } catch (error) {
    cutBack(fd, before);
    throw failure(path, options, error);
  }
}

/**
 * Appends `data` to the file at `path` (created with `mode` if missing) whole or not at all, and fsyncs it (and the
 * directory when the file was empty, so that a new file survives a crash). On any failure the file is cut back to
 * its previous length and the coded error is thrown.
 */
export function appendFileDurably(path: string, data: string | Uint8Array, options: DurableWriteOptions & { mode?: number }): void {
  let fd: number;
  try {
    fd = openSync(path, 'a', options.mode ?? 0o600);
  } catch (error) {
    throw failure(path, options, error);
  }
  try {
    const before = lengthOf(fd, path, options);
    try {
      writeAll(fd, data, options.write);
      fsyncSync(fd);
      if (before === 0) fsyncDirectory(dirname(path));
    } catch (error) {
      cutBack(fd, before);
      throw failure(path, options, error);
    }
  } finally {
    closeSync(fd);
  }
}
