// A small reader of V8 .heapsnapshot files (the JSON Chrome DevTools loads): every node's
// type, name, self size and retained size (through the dominator tree, Cooper, Harvey and
// Kennedy's "A Simple, Fast Dominance Algorithm", 2001, as DevTools computes it; weak edges do
// not retain), grouped the way DevTools' Summary view groups them (objects by constructor,
// everything else by kind), and the difference of two such summaries.
import { readFileSync } from "node:fs";

/** Count, self size and retained size (bytes) of one group of heap nodes. */
export interface Group {
  count: number;
  selfSize: number;
  /**
   * What freeing the group's objects would free: the retained sizes of its objects that are not
   * dominated by another object of the same group (an object's own retained size counts what
   * only it keeps alive).
   */
  retainedSize: number;
}

interface Snapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** The immediate dominator of every node reachable from the root (node 0), by node index. */
function dominators(data: Snapshot): { idom: Int32Array; order: Int32Array } {
  const { nodes, edges } = data;
  const meta = data.snapshot.meta;
  const nw = meta.node_fields.length;
  const ew = meta.edge_fields.length;
  const count = nodes.length / nw;
  const edgeCountAt = meta.node_fields.indexOf("edge_count");
  const edgeTypeAt = meta.edge_fields.indexOf("type");
  const toAt = meta.edge_fields.indexOf("to_node");
  const weak = meta.edge_types[0].indexOf("weak");
  const firstEdge = new Int32Array(count + 1);
  for (let n = 0; n < count; n++) {
    firstEdge[n + 1] = (firstEdge[n] as number) + (nodes[n * nw + edgeCountAt] as number) * ew;
  }
  const strong = (e: number) => edges[e + edgeTypeAt] !== weak;
  // Post-order of a depth-first walk from the root.
  const post = new Int32Array(count).fill(-1);
  const order = new Int32Array(count);
  const visited = new Uint8Array(count);
  const stack = new Int32Array(count);
  const cursor = new Int32Array(count);
  let top = 0;
  let n = 0;
  stack[0] = 0;
  visited[0] = 1;
  cursor[0] = firstEdge[0] as number;
  while (top >= 0) {
    const node = stack[top] as number;
    const end = firstEdge[node + 1] as number;
    let pushed = false;
    for (let e = cursor[node] as number; e < end; e += ew) {
      const to = (edges[e + toAt] as number) / nw;
      if (!strong(e) || visited[to] === 1) continue;
      cursor[node] = e + ew;
      visited[to] = 1;
      cursor[to] = firstEdge[to] as number;
      stack[++top] = to;
      pushed = true;
      break;
    }
    if (!pushed) {
      cursor[node] = end;
      post[node] = n;
      order[n++] = node;
      top--;
    }
  }
  // Predecessors (strong edges between reachable nodes), as lists by post-order number.
  const predCount = new Int32Array(n + 1);
  for (let from = 0; from < count; from++) {
    if (post[from] === -1) continue;
    for (let e = firstEdge[from] as number; e < (firstEdge[from + 1] as number); e += ew) {
      const to = (edges[e + toAt] as number) / nw;
      if (strong(e) && post[to] !== -1) predCount[(post[to] as number) + 1]++;
    }
  }
  for (let i = 0; i < n; i++)
    predCount[i + 1] = (predCount[i + 1] as number) + (predCount[i] as number);
  const preds = new Int32Array(predCount[n] as number);
  const fill = predCount.slice();
  for (let from = 0; from < count; from++) {
    if (post[from] === -1) continue;
    for (let e = firstEdge[from] as number; e < (firstEdge[from + 1] as number); e += ew) {
      const to = (edges[e + toAt] as number) / nw;
      if (strong(e) && post[to] !== -1) preds[fill[post[to] as number]++] = post[from] as number;
    }
  }
  // Cooper, Harvey, Kennedy: iterate in reverse post-order until nothing changes.
  const root = n - 1;
  const dom = new Int32Array(n).fill(-1);
  dom[root] = root;
  const intersect = (a: number, b: number) => {
    while (a !== b) {
      while (a < b) a = dom[a] as number;
      while (b < a) b = dom[b] as number;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let b = root - 1; b >= 0; b--) {
      let idom = -1;
      for (let p = predCount[b] as number; p < (predCount[b + 1] as number); p++) {
        const pred = preds[p] as number;
        if (dom[pred] === -1) continue;
        idom = idom === -1 ? pred : intersect(pred, idom);
      }
      if (idom !== -1 && dom[b] !== idom) {
        dom[b] = idom;
        changed = true;
      }
    }
  }
  // Back to node indices.
  const idom = new Int32Array(count).fill(-1);
  for (let i = 0; i < n; i++) idom[order[i] as number] = order[dom[i] as number] as number;
  return { idom, order: order.subarray(0, n) };
}

/** Groups every node of a snapshot: objects by constructor name, closures by function name. */
export function summarize(path: string): Map<string, Group> {
  const data = JSON.parse(readFileSync(path, "utf8")) as Snapshot;
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const { nodes, strings } = data;
  const count = nodes.length / width;
  const keys: string[] = new Array(count);
  for (let n = 0; n < count; n++) {
    const type = types[nodes[n * width + typeAt] as number] as string;
    const name = strings[nodes[n * width + nameAt] as number] as string;
    if (type === "object" || type === "native") keys[n] = name;
    else if (type === "closure") keys[n] = `(closure) ${name || "anonymous"}`;
    else keys[n] = `(${type})`;
  }
  // Retained sizes: each node's own, added to its dominator's, children (lower post-order) first.
  const { idom, order } = dominators(data);
  const retained = new Float64Array(count);
  for (let n = 0; n < count; n++) retained[n] = nodes[n * width + sizeAt] as number;
  for (const node of order) {
    const d = idom[node] as number;
    if (d !== node && d >= 0) retained[d] = (retained[d] as number) + (retained[node] as number);
  }
  const groups = new Map<string, Group>();
  for (let n = 0; n < count; n++) {
    const key = keys[n] as string;
    const group = groups.get(key) ?? { count: 0, selfSize: 0, retainedSize: 0 };
    group.count++;
    group.selfSize += nodes[n * width + sizeAt] as number;
    // Not counted twice: an object dominated by one of its own group is in that one's size.
    let d = idom[n] as number;
    let nested = false;
    for (let hops = 0; d > 0 && hops < 64; hops++, d = idom[d] as number) {
      if (keys[d] === key) {
        nested = true;
        break;
      }
    }
    if (!nested && idom[n] !== -1) group.retainedSize += retained[n] as number;
    groups.set(key, group);
  }
  return groups;
}

/** `after − before` per group, largest growth in self size first. */
export function diff(
  before: Map<string, Group>,
  after: Map<string, Group>,
): Array<{ name: string; count: number; selfSize: number; retainedSize: number }> {
  const names = new Set([...before.keys(), ...after.keys()]);
  return [...names]
    .map((name) => ({
      name,
      count: (after.get(name)?.count ?? 0) - (before.get(name)?.count ?? 0),
      selfSize: (after.get(name)?.selfSize ?? 0) - (before.get(name)?.selfSize ?? 0),
      retainedSize: (after.get(name)?.retainedSize ?? 0) - (before.get(name)?.retainedSize ?? 0),
    }))
    .sort((a, b) => b.selfSize - a.selfSize);
}

/** Total self size of a summary, bytes. */
export function total(groups: Map<string, Group>): number {
  let sum = 0;
  for (const g of groups.values()) sum += g.selfSize;
  return sum;
}
