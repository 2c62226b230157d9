'use strict';
/*
 * coderunner's JavaScript driver: runs snippets in ONE persistent Node.js global context.
 *
 * Started by coderunner/engine/node.py as `node --expose-internals node_driver.js <control-fd>`.
 *
 * Protocol. <control-fd> is one end of a socketpair owned by the Python side; commands come in
 * and replies go out on it as JSON lines. User output never touches it: user code writes to the
 * real fds 1 and 2, and stdin is /dev/null, so nothing the user does can forge or read a reply.
 *
 *   -> {"op": "exec", "id", "code", "token"}
 *        Runs `code`. When it has finished, writes `token` to stdout AND stderr through the same
 *        stream objects user output goes through (writes to one stream are ordered, so the token
 *        lands after every byte the snippet wrote, even when Node queues writes to a pipe), then
 *   <- {"id", "count", "status": "ok" | "error" | "interrupted", "value"?, "error"?}
 *        `value` is util.inspect() of the snippet's completion value (null when undefined);
 *        `error` is {name, message, stack}.
 *   -> {"op": "configure", "id", "cwd", "env"}   <- {"id", "status": "ok" | "error", "error"?}
 *   <- {"id": "ready", "status": "ok", "pid", "node"}   once, at startup.
 *
 * SIGINT interrupts the running snippet and keeps the context: synchronous code through
 * `breakOnSigint`, a pending await through the SIGINT listener below.
 *
 * Why the main context (vm.Script#runInThisContext) rather than vm.createContext(): a separate
 * context is a separate realm, so arrays and errors made by Node's own modules fail `instanceof`
 * checks there (`e instanceof Error` is false for an fs error), which breaks ordinary user code.
 * The main context also has every Node global (console, process, Buffer, timers, URL, fetch,
 * structuredClone, ...) without a list to keep up to date. This file's own state lives in module
 * scope, out of user code's reach; user code's top-level declarations live in the global scope.
 */

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const vm = require('vm');
const Module = require('module');

// Captured now so that user code replacing these globals cannot break the driver.
const { parse: parseJSON, stringify: toJSON } = JSON;
const PromiseCtor = Promise;
const promiseThen = Promise.prototype.then;
const realStdout = process.stdout;
const realStderr = process.stderr;
const writeStdout = realStdout.write;
const writeStderr = realStderr.write;

// Node's own REPL helpers, reachable only with --expose-internals. processTopLevelAwait turns a
// snippet with top-level await into an async function while hoisting its declarations to the
// global scope (so they persist) and returning its last expression; acorn lets us rewrite
// re-declarations. Both are optional: without them we fall back to simpler behaviour.
let processTopLevelAwait = null;
let acorn = null;
try {
  ({ processTopLevelAwait } = require('internal/repl/await'));
} catch {
  processTopLevelAwait = null;
}
try {
  acorn = require('internal/deps/acorn/acorn/dist/acorn');
} catch {
  acorn = null;
}

// Lets `await import("x")` work inside snippets (Node >= 20.12); older versions report an error.
const IMPORT_DYNAMICALLY = vm.constants ? vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER : undefined;
const INTERRUPTED = Symbol('interrupted');

let executionCount = 0;
// The running execution's interrupt state, or null between executions (SIGINT is then ignored).
let current = null;

// --- globals for user code ----------------------------------------------------------------------

/** Make `require` (and module, exports, __filename, __dirname) resolve from `dir`, like a file there. */
function pointRequireAt(dir) {
  const filename = path.join(dir, '__coderunner__.js');
  const mod = new Module(filename, null);
  mod.filename = filename;
  mod.paths = Module._nodeModulePaths(dir);
  mod.loaded = true;
  const requireFn = Module.createRequire(filename);
  Object.assign(globalThis, {
    require: requireFn,
    module: mod,
    exports: mod.exports,
    __filename: filename,
    __dirname: dir,
  });
}

// --- compiling a snippet ------------------------------------------------------------------------

/** Names bound by a declaration target (`x`, `{a, b: [c]}`, `...rest`). */
function boundNames(node, out = []) {
  if (!node) return out;
  switch (node.type) {
    case 'Identifier':
      out.push(node.name);
      break;
    case 'ObjectPattern':
      for (const p of node.properties) boundNames(p.type === 'RestElement' ? p.argument : p.value, out);
      break;
    case 'ArrayPattern':
      for (const e of node.elements) boundNames(e, out);
      break;
    case 'AssignmentPattern':
      boundNames(node.left, out);
      break;
    case 'RestElement':
      boundNames(node.argument, out);
      break;
    default:
      break;
  }
  return out;
}

/**
 * Make a snippet re-runnable, the way a notebook user expects.
 *
 * Plain JS refuses to declare a top-level `let`/`const`/`class` name twice, so running
 * `let x = 1` again would fail. Top-level `const` is compiled as `let` (so its binding can be
 * assigned by a later re-declaration; the cost is that reassigning it no longer throws), and each
 * top-level declaration of a name in `redeclared` becomes an assignment to the existing binding.
 * Edits keep every line and column in place so that stack traces still point at the user's code.
 */
function rewriteDeclarations(code, redeclared) {
  if (acorn === null || !/\b(?:const|let|class)\b/.test(code)) return code;
  let ast;
  try {
    ast = acorn.parse(code, {
      ecmaVersion: 'latest',
      sourceType: 'script',
      allowAwaitOutsideFunction: true,
      allowHashBang: true,
    });
  } catch {
    return code; // a syntax error: let V8 report it with its own message
  }
  const edits = []; // [start, end, replacement]
  for (const node of ast.body) {
    if (node.type === 'VariableDeclaration' && node.kind !== 'var') {
      const names = node.declarations.flatMap((d) => boundNames(d.id));
      if (names.some((n) => redeclared.has(n))) {
        // `let a = 1, {b} = o` -> `void (a = 1, {b} = o)`; `let a` -> `void (a = undefined)`.
        edits.push([node.start, node.start + node.kind.length, 'void (']);
        for (const d of node.declarations) {
          if (d.init === null) edits.push([d.id.end, d.id.end, ' = undefined']);
        }
        const last = node.declarations[node.declarations.length - 1];
        edits.push([last.end, last.end, ')']);
      } else if (node.kind === 'const') {
        edits.push([node.start, node.start + 5, 'let  ']);
      }
    } else if (node.type === 'ClassDeclaration' && redeclared.has(node.id.name)) {
      edits.push([node.start, node.start, `${node.id.name} = `]);
      edits.push([node.end, node.end, ';']);
    }
  }
  // Apply from the end backwards so earlier offsets stay valid; of two inserts at one offset the
  // one pushed later is applied first, so it ends up after the other (` = undefined` then `)`).
  const order = edits.map((edit, index) => [edit, index]).sort((a, b) => b[0][0] - a[0][0] || b[1] - a[1]);
  let out = code;
  for (const [[start, end, text]] of order) out = out.slice(0, start) + text + out.slice(end);
  return out;
}

/**
 * Wrap a snippet that uses top-level await, or return null when it does not.
 *
 * The wrapped code evaluates to a promise of `{value}` (the last expression) or undefined.
 * With Node's REPL helper, declarations are hoisted to the global scope and persist. Without it
 * the snippet simply runs inside an async function: its declarations do NOT persist and its last
 * expression is not shown.
 */
function wrapTopLevelAwait(source) {
  if (!source.includes('await')) return null;
  if (processTopLevelAwait !== null) {
    try {
      return processTopLevelAwait(source);
    } catch {
      return null; // a syntax error: compiling the original reports it properly
    }
  }
  try {
    new vm.Script(source);
    return null;
  } catch (err) {
    if (err instanceof SyntaxError && /await/.test(err.message)) return `(async () => {${source}\n})()`;
    return null;
  }
}

/** The name in a SyntaxError raised by re-declaring a global binding, before any user code ran. */
function redeclaredName(err) {
  if (!(err instanceof SyntaxError)) return null;
  const match = /^Identifier '(.+)' has already been declared$/.exec(err.message);
  if (match === null) return null;
  // Raised while V8 instantiates the script's declarations, the error has no frame of the
  // snippet on top: nothing has run yet, so compiling again is safe. One thrown by the snippet
  // itself (eval, `throw new SyntaxError`) has, and must not trigger a second run.
  const frame = String(err.stack).split('\n').find((line) => /^\s+at /.test(line));
  return frame !== undefined && /Script\.runInThisContext|\(node:vm:/.test(frame) ? match[1] : null;
}

/** Compile and run `code`'s synchronous part; returns its completion value. */
function runScript(code, filename) {
  const redeclared = new Set();
  for (;;) {
    let source = rewriteDeclarations(code, redeclared);
    const wrapped = wrapTopLevelAwait(source);
    if (wrapped !== null) source = wrapped;
    const options = { filename };
    if (IMPORT_DYNAMICALLY !== undefined) options.importModuleDynamically = IMPORT_DYNAMICALLY;
    const script = new vm.Script(source, options);
    try {
      return { value: script.runInThisContext({ breakOnSigint: true }), wrapped: wrapped !== null };
    } catch (err) {
      const name = redeclaredName(err);
      if (name !== null && acorn !== null && !redeclared.has(name)) {
        redeclared.add(name);
        continue;
      }
      throw err;
    }
  }
}

// --- executing ------------------------------------------------------------------------------------

/** Settle with `promise`, or reject with INTERRUPTED as soon as SIGINT arrives. */
function untilSettledOrInterrupted(promise, state) {
  return new PromiseCtor((resolve, reject) => {
    state.onInterrupt = () => reject(INTERRUPTED);
    if (state.interrupted) reject(INTERRUPTED);
    promiseThen.call(promise, resolve, reject);
  });
}

/** Cut the frames of this driver and of node:vm off a stack; they mean nothing to the user. */
function trimStack(stack) {
  const lines = stack.split('\n');
  const cut = lines.findIndex(
    (line) => /^\s+at /.test(line) && (line.includes(__filename) || /[( ]node:vm:|Script\.runInThisContext/.test(line)),
  );
  return (cut < 0 ? lines : lines.slice(0, cut)).join('\n');
}

/** {name, message, stack} for anything thrown, Error or not (`throw 5`). Never throws. */
function describe(err) {
  try {
    if (util.types.isNativeError(err) || err instanceof Error) {
      const name = String(err.name || 'Error');
      const message = err.message === undefined ? '' : String(err.message);
      const stack = typeof err.stack === 'string' ? err.stack : `${name}: ${message}`;
      return { name, message, stack: trimStack(stack) };
    }
    const shown = util.inspect(err);
    return { name: 'Error', message: shown, stack: `Uncaught ${shown}` };
  } catch {
    return { name: 'Error', message: 'a value was thrown that cannot be described', stack: '' };
  }
}

async function execute(msg) {
  const count = ++executionCount;
  const state = { interrupted: false, onInterrupt: null };
  current = state;
  let result;
  try {
    const { value: completion, wrapped } = runScript(String(msg.code), `<cell ${count}>`);
    let value = completion;
    if (wrapped) {
      const box = await untilSettledOrInterrupted(completion, state);
      value = box === undefined || box === null ? undefined : box.value;
    } else if (util.types.isPromise(completion)) {
      // Like a REPL with await support: a snippet that evaluates to a promise shows its value.
      value = await untilSettledOrInterrupted(completion, state);
    }
    result = { status: 'ok', value: value === undefined ? null : util.inspect(value) };
  } catch (err) {
    if (err === INTERRUPTED || (util.types.isNativeError(err) && err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED')) {
      result = { status: 'interrupted' };
    } else {
      result = { status: 'error', error: describe(err) };
    }
  } finally {
    current = null;
  }
  return { id: msg.id, count, ...result };
}

function configure(msg) {
  if (typeof msg.cwd === 'string' && msg.cwd !== '') process.chdir(msg.cwd);
  for (const [key, value] of Object.entries(msg.env || {})) process.env[key] = String(value);
  pointRequireAt(process.cwd());
}

// --- the control channel ------------------------------------------------------------------------

const control = new net.Socket({ fd: Number(process.argv[2]), readable: true, writable: true });

function reply(obj) {
  control.write(`${toJSON(obj)}\n`);
}

/** Write the end-of-execution token after everything the snippet wrote to each stream. */
function writeTokens(token) {
  for (const [stream, write] of [
    [realStdout, writeStdout],
    [realStderr, writeStderr],
  ]) {
    try {
      write.call(stream, token);
    } catch (err) {
      // The user closed or broke the stream: say so where it can still be seen.
      fs.writeSync(2, `coderunner: could not write to the output stream: ${describe(err).message}\n`);
    }
  }
}

async function handle(msg) {
  if (msg.op === 'exec') {
    let response;
    try {
      response = await execute(msg);
    } catch (err) {
      response = { id: msg.id, status: 'error', error: describe(err) };
    }
    writeTokens(String(msg.token));
    reply(response);
  } else if (msg.op === 'configure') {
    try {
      configure(msg);
      reply({ id: msg.id, status: 'ok' });
    } catch (err) {
      reply({ id: msg.id, status: 'error', error: describe(err) });
    }
  } else {
    reply({ id: msg.id, status: 'error', error: { name: 'ProtocolError', message: `unknown op ${msg.op}`, stack: '' } });
  }
}

let inbox = '';
let queue = PromiseCtor.resolve();
control.setEncoding('utf8');
control.on('data', (chunk) => {
  // Search only the new chunk for newlines: a multi-megabyte snippet arrives in many chunks.
  let from = inbox.length;
  inbox += chunk;
  let newline;
  while ((newline = inbox.indexOf('\n', from)) >= 0) {
    const line = inbox.slice(0, newline);
    inbox = inbox.slice(newline + 1);
    from = 0;
    if (line === '') continue;
    let msg;
    try {
      msg = parseJSON(line);
    } catch {
      continue;
    }
    // One command at a time, in order. handle() catches user errors; a failure of the driver
    // itself is reported and must not stop the commands queued after it.
    queue = promiseThen.call(
      promiseThen.call(queue, () => handle(msg)),
      undefined,
      (err) => fs.writeSync(2, `coderunner: driver error: ${describe(err).stack}\n`),
    );
  }
});
// The Python side went away (or shut us down): nobody can read results any more.
control.on('end', () => process.exit(0));
control.on('error', () => process.exit(1));

// Keep the process alive on SIGINT: it only ever means "stop the running snippet".
process.on('SIGINT', () => {
  const state = current;
  if (state === null) return;
  state.interrupted = true;
  if (state.onInterrupt !== null) state.onInterrupt();
});

// Errors from timers and unhandled rejections must not kill the session: report them on stderr.
process.on('uncaughtException', (err, origin) => {
  const label = origin === 'unhandledRejection' ? 'Uncaught (in promise)' : 'Uncaught';
  let text;
  try {
    text = util.inspect(err);
  } catch {
    text = describe(err).message;
  }
  try {
    writeStderr.call(realStderr, `${label} ${text}\n`);
  } catch {
    // stderr is gone too; nothing left to tell
  }
});

pointRequireAt(process.cwd());
reply({ id: 'ready', status: 'ok', pid: process.pid, node: process.version });
