import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WriteFunction } from '../../src/shared/durable-write.ts';

const PAGE = 4096;

/** A small file system of a test's own, filled and freed at will: a real disk-full, not a mock. */
export interface SmallDisk {
  readonly dir: string;
  /** Fills it up, leaving exactly `pages` free 4 KB pages (0: full). */
  fill(pages?: number): void;
  /** Frees what `fill` took. */
  free(): void;
  /** Free 4 KB pages. */
  freePages(): number;
  unmount(): void;
}

/**
 * Mounts a tmpfs of `kilobytes` in a fresh directory; null where that is not allowed (not root, no mount): the
 * tests that need it are skipped there, and the same defects have tests with an injected short write.
 */
export function mountSmallDisk(kilobytes: number): SmallDisk | null {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return null;
  const dir = mkdtempSync(join(tmpdir(), 'candor-small-disk-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${kilobytes}k,mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
  if (mounted.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  const filler = join(dir, 'filler');
  const disk: SmallDisk = {
    dir,
    fill(pages = 0) {
      const fd = openSync(filler, 'a');
      try {
        const chunk = Buffer.alloc(16 * PAGE);
        for (;;) {
          try {
            // A short write on a full tmpfs stops at a page boundary: the filler stays page-aligned.
            if (writeSync(fd, chunk) === 0) break;
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw error;
          }
        }
        ftruncateSync(fd, Math.max(0, fstatSync(fd).size - pages * PAGE));
      } finally {
        closeSync(fd);
      }
      if (disk.freePages() !== pages) throw new Error(`the small disk has ${disk.freePages()} free pages, not ${pages}`);
    },
    free() {
      rmSync(filler, { force: true });
    },
    freePages() {
      const stats = statfsSync(dir);
      return (stats.bavail * stats.bsize) / PAGE;
    },
    unmount() {
      // Lazily: a descriptor a failed test left open does not keep it mounted.
      spawnSync('umount', ['-l', dir], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return disk;
}


/** write(2) as on a disk with `room` bytes left: a short write up to it, then ENOSPC (for tests on any machine). */
export function diskWithRoom(room: number): WriteFunction {
  let left = room;
  return (fd, buffer, offset, length) => {
    if (left === 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    const written = writeSync(fd, buffer, offset, Math.min(length, left));
    left -= written;
    return written;
  };
}
