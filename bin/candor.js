#!/usr/bin/env node
// The command's entry point, in plain JavaScript so that Node need not start its TypeScript stripper for it: when
// every TypeScript module then comes from the compile cache, a start skips that set-up entirely (~90 ms per start of
// the server or of any CLI command; docs/configuration.md).
// Node's compile cache (compiled code and stripped TypeScript of this project's modules, checked against each file's
// content) makes every start after the first faster. It lives beside the dependencies, in node_modules/.cache, unless
// NODE_COMPILE_CACHE names another directory; where it cannot be written, Node goes on without it.
import { enableCompileCache } from 'node:module';
import { join } from 'node:path';

// (With NODE_COMPILE_CACHE set, Node has enabled it there already and this call changes nothing.)
enableCompileCache(join(import.meta.dirname, '..', 'node_modules', '.cache', 'node-compile'));
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
