import { describe, expect, it } from 'vitest';
import { isPortRace, namespaceRetentionMs, PortInUseError, ServiceStartError } from '../../infra/services.js';
import { onFreePorts } from '../helpers/servers.js';

describe('isPortRace', () => {
  it('recognises a server that lost its port to another process, and nothing else', () => {
    const temporal =
      'failed listening for HTTP API on 127.0.0.1:35459: listen tcp 127.0.0.1:35459: bind: address already in use';
    const nats =
      'Error listening on port: 127.0.0.1:4222, "listen tcp 127.0.0.1:4222: bind: address already in use"';
    expect(isPortRace(new ServiceStartError('temporal', 'temporal exited during startup', temporal))).toBe(
      true,
    );
    expect(isPortRace(new ServiceStartError('nats', 'nats exited during startup', nats))).toBe(true);
    expect(isPortRace(new ServiceStartError('temporal', 'exited', 'database is locked'))).toBe(false);
    expect(isPortRace(new Error('address already in use'))).toBe(false);
  });

  it('asked about given ports, answers only for a race on one of them, matched by the whole number', () => {
    const log =
      'failed listening for HTTP API on 127.0.0.1:35459: listen tcp 127.0.0.1:35459: bind: address already in use';
    const err = new ServiceStartError('temporal', 'temporal exited during startup', log);
    // Its picked HTTP and metrics ports: the HTTP one was lost.
    expect(isPortRace(err, [35459, 40111])).toBe(true);
    // Not one it picked (the gRPC port a user named), nor a port whose number only starts the same.
    expect(isPortRace(err, [7233])).toBe(false);
    expect(isPortRace(err, [3545])).toBe(false);
  });

  it('finds the bind error however much a crash printed after it, and names it in the message', () => {
    const bind = 'listen tcp 127.0.0.1:7233: bind: address already in use';
    const trace = Array.from({ length: 200 }, (_, i) => `goroutine ${i} [running]:`).join('\n');
    const err = new ServiceStartError(
      'temporal',
      'temporal exited during startup (code 2)',
      `${bind}\n${trace}\n`,
    );
    expect(isPortRace(err)).toBe(true);
    expect(err.message.split('\n').slice(0, 2)).toEqual(['temporal exited during startup (code 2)', bind]);
    expect(err.logTail.split('\n')).toHaveLength(40);
  });
});

describe('onFreePorts (the test servers)', () => {
  it('starts again on a fresh port when one it had found free was taken before its own check of it', async () => {
    const ports: number[] = [];
    const started = await onFreePorts(async (port) => {
      ports.push(port);
      // The other server starting side by side bound it first.
      if (ports.length === 1) throw new PortInUseError(port, '127.0.0.1', '--port');
      return port;
    });
    expect(ports).toHaveLength(2);
    expect(started).toBe(ports[1]);
    // Anything else is not a race, and is not tried again.
    let calls = 0;
    await expect(
      onFreePorts(async () => {
        calls++;
        throw new Error('database is locked');
      }),
    ).rejects.toThrow('database is locked');
    expect(calls).toBe(1);
  });
});

describe('namespaceRetentionMs', () => {
  const hour = 3_600_000;
  it('keeps ended runs as long as their content, a day at least, whole hours, ten years for content kept until deleted', () => {
    expect(namespaceRetentionMs(7 * 24 * hour)).toBe(7 * 24 * hour);
    expect(namespaceRetentionMs(1_000)).toBe(24 * hour);
    expect(namespaceRetentionMs(30 * hour + 1)).toBe(31 * hour);
    expect(namespaceRetentionMs(0)).toBe(3_650 * 24 * hour);
  });
});
