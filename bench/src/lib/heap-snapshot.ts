// A small reader of V8 .heapsnapshot files (the JSON Chrome DevTools loads): every node's
// type, name and self size, grouped the way DevTools' Summary view groups them (objects by
// constructor, everything else by kind), and the difference of two such summaries.
import { readFileSync } from "node:fs";

/** Count and self size (bytes) of one group of heap nodes. */
export interface Group {
  count: number;
  selfSize: number;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
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
  const groups = new Map<string, Group>();
  const { nodes, strings } = data;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt] as number] as string;
    const name = strings[nodes[i + nameAt] as number] as string;
    let key: string;
    if (type === "object" || type === "native") key = name;
    else if (type === "closure") key = `(closure) ${name || "anonymous"}`;
    else key = `(${type})`;
    const group = groups.get(key) ?? { count: 0, selfSize: 0 };
    group.count++;
    group.selfSize += nodes[i + sizeAt] as number;
    groups.set(key, group);
  }
  return groups;
}

/** `after − before` per group, largest growth in self size first. */
export function diff(
  before: Map<string, Group>,
  after: Map<string, Group>,
): Array<{ name: string; count: number; selfSize: number }> {
  const names = new Set([...before.keys(), ...after.keys()]);
  return [...names]
    .map((name) => ({
      name,
      count: (after.get(name)?.count ?? 0) - (before.get(name)?.count ?? 0),
      selfSize: (after.get(name)?.selfSize ?? 0) - (before.get(name)?.selfSize ?? 0),
    }))
    .sort((a, b) => b.selfSize - a.selfSize);
}

/** Total self size of a summary, bytes. */
export function total(groups: Map<string, Group>): number {
  let sum = 0;
  for (const g of groups.values()) sum += g.selfSize;
  return sum;
}
