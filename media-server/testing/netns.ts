/**
 * A small network of the test's own: one Linux network namespace per node, each joined by a veth
 * pair to a bridge in the test's (root) namespace, on a private /24 of this run. The root side holds
 * the bridge's address (`hostIp`) and any extra addresses a test asks for (`addHostAddress`, e.g. an
 * impairment proxy's mirrors); each node has its own address and sees nothing of the machine's
 * loopback, so whatever it reaches (the bus, another node) it reaches over its veth. Processes run
 * inside with `lab.spawn(node, ...)` (`ip netns exec`).
 *
 * Needs root and iproute2's `ip` (`requireNetnsSupport` fails with a clear message otherwise: a test
 * built on this must fail, not skip, where it cannot run). No sysctl changes: the nodes and the root
 * side share one link-layer segment, so nothing is routed between interfaces.
 *
 * Names carry the creating process's pid and a random run id (namespaces `veza-t-<pid>-<run>-<node>`,
 * the bridge's alias `veza-t-<pid>-<run>`), so runs never collide, and a lab left by a process that
 * was killed outright (no exit hook ran) is removed by the next lab that starts.
 */
import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';

const PREFIX = 'veza-t-';

export interface NetnsNode {
  name: string;
  /** The namespace (`ip netns exec <ns> ...`). */
  ns: string;
  /** The node's address on the lab's network, the only one it has besides its own loopback. */
  ip: string;
}

export interface NetnsLab {
  /** The root namespace's address on the lab's network: where nodes reach the test's servers. */
  readonly hostIp: string;
  readonly nodes: ReadonlyMap<string, NetnsNode>;
  node(name: string): NetnsNode;
  /** One more address of the root namespace on the lab's network (removed with the lab). */
  addHostAddress(): string;
  /**
   * A process inside `node`'s namespace, in a process group of its own (so a kill takes its children,
   * e.g. mediasoup workers, with it); the lab kills whatever is left in its namespaces on close.
   */
  spawn(node: string, command: string, args: string[], options?: SpawnOptions): ChildProcess;
  close(): void;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Throws, with what to do, unless this process can build a lab (root, `ip` installed, netns usable). */
export function requireNetnsSupport(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'this test puts media nodes in network namespaces of its own, which needs root (CI runs it as root)',
    );
  }
  try {
    ip(['netns', 'list']);
  } catch (error) {
    throw new Error(
      `this test needs iproute2's \`ip\` with network namespace support (apt-get install iproute2): ${String(error)}`,
    );
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killNamespaceProcesses(ns: string): void {
  let pids: number[] = [];
  try {
    pids = ip(['netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Removes namespaces and bridges of labs whose creating process is dead. */
function sweepStale(): void {
  const owner = (name: string) => Number(name.slice(PREFIX.length).split('-')[0]);
  for (const line of ip(['netns', 'list']).split('\n')) {
    const ns = line.split(' ')[0] ?? '';
    if (!ns.startsWith(PREFIX) || alive(owner(ns))) continue;
    killNamespaceProcesses(ns);
    ip(['netns', 'del', ns]);
  }
  const links = JSON.parse(ip(['-j', 'link', 'show', 'type', 'bridge'])) as Array<{
    ifname: string;
    ifalias?: string;
  }>;
  for (const link of links) {
    if (link.ifalias?.startsWith(PREFIX) && !alive(owner(link.ifalias))) ip(['link', 'del', link.ifname]);
  }
}

/** A /24 under 10/8 that no address or route of the machine touches yet. */
function freeSubnet(): string {
  const used = ip(['-4', 'addr']) + ip(['-4', 'route', 'show', 'table', 'all']);
  for (let attempt = 0; attempt < 50; attempt++) {
    const subnet = `10.${randomInt(100, 250)}.${randomInt(0, 256)}`;
    if (!used.includes(`${subnet}.`)) return subnet;
  }
  throw new Error('no free 10.x.y.0/24 for the network namespace lab');
}

export function createNetnsLab(nodeNames: string[]): NetnsLab {
  requireNetnsSupport();
  sweepStale();
  const run = randomBytes(3).toString('hex');
  const tag = `${PREFIX}${process.pid}-${run}`;
  const subnet = freeSubnet();
  const bridge = `vzb${run}`;
  const hostIp = `${subnet}.1`;
  const nodes = new Map<string, NetnsNode>();
  const hostAddresses: string[] = [];
  let closed = false;

  const close = () => {
    if (closed) return;
    closed = true;
    process.off('exit', close);
    for (const node of nodes.values()) {
      killNamespaceProcesses(node.ns);
      try {
        // Deleting a namespace deletes its end of the veth, and with it the pair.
        ip(['netns', 'del', node.ns]);
      } catch {
        // Never created (a failure half-way through setup).
      }
    }
    try {
      ip(['link', 'del', bridge]);
    } catch {
      // Never created.
    }
  };
  // A run that ends without calling close (a crash, an exit from a hook) still cleans up.
  process.on('exit', close);

  try {
    ip(['link', 'add', bridge, 'type', 'bridge']);
    ip(['link', 'set', bridge, 'alias', tag]);
    ip(['addr', 'add', `${hostIp}/24`, 'dev', bridge]);
    ip(['link', 'set', bridge, 'up']);
    nodeNames.forEach((name, index) => {
      if (!/^[a-z0-9]+$/.test(name)) throw new Error(`lab node names are [a-z0-9]+, not ${name}`);
      const node: NetnsNode = { name, ns: `${tag}-${name}`, ip: `${subnet}.${10 + index}` };
      // Registered before it exists, so close() removes whatever part of it was made.
      nodes.set(name, node);
      const outside = `vzh${run}${index}`;
      const inside = `vzn${run}${index}`;
      ip(['netns', 'add', node.ns]);
      ip(['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside]);
      ip(['link', 'set', inside, 'netns', node.ns]);
      ip(['link', 'set', outside, 'master', bridge, 'up']);
      ip(['-n', node.ns, 'link', 'set', inside, 'name', 'eth0']);
      ip(['-n', node.ns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0']);
      ip(['-n', node.ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', node.ns, 'link', 'set', 'lo', 'up']);
      // Replies to the root namespace's other addresses (a WebRTC peer's candidates) go back over the veth.
      ip(['-n', node.ns, 'route', 'add', 'default', 'via', hostIp]);
    });
  } catch (error) {
    close();
    throw error;
  }

  const nodeNamed = (name: string): NetnsNode => {
    const node = nodes.get(name);
    if (!node) throw new Error(`no node ${name} in the lab`);
    return node;
  };

  return {
    hostIp,
    nodes,
    node: nodeNamed,
    addHostAddress() {
      const address = `${subnet}.${100 + hostAddresses.length}`;
      ip(['addr', 'add', `${address}/24`, 'dev', bridge]);
      hostAddresses.push(address);
      return address;
    },
    spawn(name, command, args, options = {}) {
      const node = nodeNamed(name);
      // `ip netns exec` execs the command in place: the child's pid is the command's.
      return spawn('ip', ['netns', 'exec', node.ns, command, ...args], { detached: true, ...options });
    },
    close,
  };
}
