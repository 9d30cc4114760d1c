/**
 * The Windows stand-in (fake-windows.ts) as a login shell: a real OpenSSH sshd runs this as its ForceCommand,
 * so the real SSH transport and the real CLI talk to it. Each command is a fresh host in the fixtures' "before"
 * state (no state survives between commands): enough for read-only work such as `underlay plan`.
 */
import { FakeWindows } from './fake-windows';

async function main(): Promise<void> {
  const command = process.env.SSH_ORIGINAL_COMMAND ?? '';
  try {
    const r = await new FakeWindows().exec(command);
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    process.exitCode = r.exitCode ?? 1;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

void main();
