// scripts/usb-vm/emulator.mjs — what the guest's scripts (contract.mjs, cli.mjs) share: starting and stopping the
/* global setTimeout */
// C emulator (firmware-bindings/build/mk-emulator) on a gadget node, a sleep and a plain assert.
import { spawn } from 'node:child_process';

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Throws Error(message) unless `cond`. */
export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/**
 * Starts the C emulator `emulator` with `args`; resolves once it logs "ready" (10 s at most) with its state
 * `{ child, log, exit }` (log: its stderr so far; exit: `{ code, signal }` once it exited).
 */
export async function startEmulator(emulator, args, label) {
  const child = spawn(emulator, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const state = { child, log: '', exit: undefined };
  child.stderr.on('data', (chunk) => {
    state.log += chunk.toString('utf8');
  });
  child.on('exit', (code, signal) => {
    state.exit = { code, signal };
  });
  const deadline = Date.now() + 10_000;
  while (!state.log.includes('mk-emulator: ready')) {
    if (state.exit !== undefined || Date.now() > deadline) {
      throw new Error(`${label} emulator did not start (exit ${JSON.stringify(state.exit)}): ${state.log}`);
    }
    await sleep(20);
  }
  return state;
}

/** Signals a started emulator (unless gone) and waits up to 5 s for it to exit. */
export async function stopEmulator(state, signal = 'SIGTERM') {
  if (state === undefined || state.exit !== undefined) return;
  state.child.kill(signal);
  const deadline = Date.now() + 5000;
  while (state.exit === undefined && Date.now() < deadline) await sleep(20);
}
