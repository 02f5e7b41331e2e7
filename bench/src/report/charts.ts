// PNG charts of the results: Vega-Lite specs rendered to SVG by Vega (headless), then to PNG by
// resvg (a prebuilt binary from npm; no native build, no download at run time).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { Results } from "../lib/results.js";
import { SERVER_KINDS } from "../lib/servers.js";
import { median } from "../lib/stats.js";

const FONT = "DejaVu Sans";
// One colour per server in every chart.
const SERVER_COLOR = {
  field: "server",
  type: "nominal",
  scale: { domain: [...SERVER_KINDS], scheme: "tableau10" },
} as const;

async function renderPng(spec: TopLevelSpec, file: string): Promise<void> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG(2);
  view.finalize();
  const png = new Resvg(svg, {
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: FONT },
  })
    .render()
    .asPng();
  writeFileSync(file, png);
}

const config = {
  font: FONT,
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 14 },
};

/** Writes every chart the results allow into `dir`; returns the files' names. */
export async function writeCharts(results: Results, dir: string): Promise<string[]> {
  const files: string[] = [];

  // Fan-out: p99 against offered load, one line per server, one panel per subscriber count.
  if (results.fanout.length > 0) {
    const rows: Array<Record<string, unknown>> = [];
    const keys = new Set(
      results.fanout.flatMap((r) =>
        r.steps.map((s) => `${r.server}|${r.subscribers}|${s.offered}`),
      ),
    );
    for (const key of keys) {
      const [server, subs, offered] = key.split("|");
      const steps = results.fanout
        .filter((r) => r.server === server && String(r.subscribers) === subs)
        .flatMap((r) => r.steps.filter((s) => String(s.offered) === offered));
      rows.push({
        server,
        subscribers: `${subs} subscribers`,
        offered: Number(offered),
        p99: Math.max(0.1, median(steps.map((s) => s.p99))),
      });
    }
    const file = "fanout-p99.png";
    await renderPng(
      {
        $schema: "https://vega.github.io/schema/vega-lite/v6.json",
        title: "Fan-out: p99 publish-to-delivery latency vs offered deliveries/s (median of runs)",
        config,
        data: { values: rows },
        facet: { column: { field: "subscribers", type: "nominal", title: null } },
        spec: {
          width: 360,
          height: 260,
          layer: [
            {
              mark: { type: "line", point: true },
              encoding: {
                x: {
                  field: "offered",
                  type: "quantitative",
                  scale: { type: "log" },
                  title: "offered deliveries/s",
                },
                y: {
                  field: "p99",
                  type: "quantitative",
                  scale: { type: "log" },
                  title: "p99 latency, ms",
                },
                color: SERVER_COLOR,
              },
            },
            {
              mark: { type: "rule", strokeDash: [4, 4], color: "red" },
              encoding: { y: { datum: 100 } },
            },
          ],
        },
      } as TopLevelSpec,
      join(dir, file),
    );
    files.push(file);

    const sustained = [...new Set(results.fanout.map((r) => `${r.server}|${r.subscribers}`))].map(
      (key) => {
        const [server, subs] = key.split("|");
        return {
          server,
          subscribers: `${subs} subscribers`,
          sustained: median(
            results.fanout
              .filter((r) => r.server === server && String(r.subscribers) === subs)
              .map((r) => r.sustained),
          ),
        };
      },
    );
    const file2 = "fanout-sustained.png";
    await renderPng(
      {
        $schema: "https://vega.github.io/schema/vega-lite/v6.json",
        title: "Fan-out: highest sustained deliveries/s (median; p99 ≤ 100 ms, all delivered)",
        config,
        data: { values: sustained },
        facet: { column: { field: "subscribers", type: "nominal", title: null } },
        spec: {
          width: 300,
          height: 240,
          mark: "bar",
          encoding: {
            x: { field: "server", type: "nominal", title: null, axis: { labelAngle: -30 } },
            y: { field: "sustained", type: "quantitative", title: "deliveries/s" },
            color: { ...SERVER_COLOR, legend: null },
          },
        },
      } as TopLevelSpec,
      join(dir, file2),
    );
    files.push(file2);

    // Cost per delivery against room size, at each run's highest sustained step (else its first).
    const cost = [...new Set(results.fanout.map((r) => `${r.server}|${r.subscribers}`))]
      .map((key) => {
        const [server, subs] = key.split("|");
        const steps = results.fanout
          .filter((r) => r.server === server && String(r.subscribers) === subs)
          .map((r) => r.steps.filter((s) => s.sustained).at(-1) ?? r.steps[0]);
        return {
          server,
          subscribers: Number(subs),
          us: median(steps.map((s) => s?.usPerDelivery ?? Number.NaN)),
        };
      })
      .filter((row) => !Number.isNaN(row.us));
    if (new Set(cost.map((row) => row.subscribers)).size > 1) {
      const file3 = "fanout-cost-per-delivery.png";
      await renderPng(
        {
          $schema: "https://vega.github.io/schema/vega-lite/v6.json",
          title:
            "Fan-out: server CPU µs per delivery by room size (median, highest sustained step)",
          config,
          width: 480,
          height: 280,
          data: { values: cost },
          mark: { type: "line", point: true },
          encoding: {
            x: {
              field: "subscribers",
              type: "quantitative",
              scale: { type: "log" },
              title: "subscribers in the room",
            },
            y: { field: "us", type: "quantitative", title: "µs of server CPU per delivery" },
            color: SERVER_COLOR,
          },
        } as TopLevelSpec,
        join(dir, file3),
      );
      files.push(file3);
    }
  }

  if (results.unary.length > 0) {
    const rows = [...new Set(results.unary.map((r) => `${r.server}|${r.protocol}`))].map((key) => {
      const [server, protocol] = key.split("|");
      return {
        label: `${server} ${protocol}`,
        protocol,
        rps: median(
          results.unary
            .filter((r) => r.server === server && r.protocol === protocol)
            .map((r) => r.rps),
        ),
      };
    });
    const file = "unary-rps.png";
    await renderPng(
      {
        $schema: "https://vega.github.io/schema/vega-lite/v6.json",
        title: "Unary calls: requests/s (median; h2load -c10 -m10, --h1 -c50 for HTTP/1.1)",
        config,
        width: 560,
        height: 300,
        data: { values: rows },
        mark: "bar",
        encoding: {
          y: {
            field: "label",
            type: "nominal",
            title: null,
            sort: null,
            axis: { labelLimit: 320 },
          },
          x: { field: "rps", type: "quantitative", title: "requests/s" },
          color: { field: "protocol", type: "nominal" },
        },
      } as TopLevelSpec,
      join(dir, file),
    );
    files.push(file);
  }

  if (results.memory.length > 0) {
    const rows = [
      ...new Set(results.memory.flatMap((r) => r.points.map((p) => `${r.server}|${p.streams}`))),
    ].map((key) => {
      const [server, streams] = key.split("|");
      return {
        server,
        streams: Number(streams),
        kib: median(
          results.memory
            .filter((r) => r.server === server)
            .flatMap((r) => r.points.filter((p) => String(p.streams) === streams))
            .map((p) => p.bytesPerStream / 1024),
        ),
      };
    });
    const file = "memory-per-stream.png";
    await renderPng(
      {
        $schema: "https://vega.github.io/schema/vega-lite/v6.json",
        title: "Resident memory per idle SubscribeMessages stream (median)",
        config,
        width: 480,
        height: 280,
        data: { values: rows },
        mark: "bar",
        encoding: {
          x: { field: "streams", type: "ordinal", title: "idle streams", axis: { labelAngle: 0 } },
          xOffset: { field: "server" },
          y: { field: "kib", type: "quantitative", title: "KiB per stream" },
          color: SERVER_COLOR,
        },
      } as TopLevelSpec,
      join(dir, file),
    );
    files.push(file);
  }

  if (results.slowConsumer.length > 0) {
    const rows = results.slowConsumer.flatMap((r) =>
      r.p99ByWindow.map((p99, second) => ({
        run: `${r.server} #${r.repetition}`,
        server: r.server,
        second: second + 1,
        p99,
        rssMiB: (r.rssByWindow[second] ?? 0) / 2 ** 20,
      })),
    );
    const file = "slow-consumer.png";
    await renderPng(
      {
        $schema: "https://vega.github.io/schema/vega-lite/v6.json",
        title: "One subscriber stops reading: the others' p99 and the server's RSS, per second",
        config,
        data: { values: rows },
        hconcat: [
          {
            width: 320,
            height: 240,
            mark: { type: "line", point: true },
            encoding: {
              x: { field: "second", type: "quantitative" },
              y: { field: "p99", type: "quantitative", title: "others' p99, ms" },
              color: SERVER_COLOR,
              detail: { field: "run" },
            },
          },
          {
            width: 320,
            height: 240,
            mark: { type: "line", point: true },
            encoding: {
              x: { field: "second", type: "quantitative" },
              y: { field: "rssMiB", type: "quantitative", title: "server RSS, MiB" },
              color: SERVER_COLOR,
              detail: { field: "run" },
            },
          },
        ],
      } as TopLevelSpec,
      join(dir, file),
    );
    files.push(file);
  }
  return files;
}
