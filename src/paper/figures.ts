/**
 * Figures 3 and 4 of the paper, from results.json: per file size, a bar per
 * configuration (the median), whiskers from p10 to p90, the model's prediction as a
 * black tick, and the ideal (Fig. 1a: one RTT, R) as a dashed line. Vega-Lite compiles
 * the spec, Vega renders SVG with no browser and no canvas, resvg turns it into PNG.
 */
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { configuration } from './configurations.js';
import type { Results } from './results.js';
import { sizeLabel } from './sizes.js';

export type Metric = 'ttfb' | 'total';

const TITLES: Readonly<Record<Metric, { title: string; axis: string }>> = {
  ttfb: { title: 'Fig. 3: time to first byte (curl time_starttransfer)', axis: 'time to first byte (s)' },
  total: { title: 'Fig. 4: download completion time (curl time_total)', axis: 'download time (s)' },
};

export function figureSpec(results: Results, metric: Metric): TopLevelSpec {
  const configs = results.meta.configs;
  const sizes = results.meta.sizes.map(sizeLabel);
  const values = results.results.map((r) => ({
    size: sizeLabel(r.sizeBytes),
    config: `${r.config} (${configuration(r.config).paperName})`,
    median: r[metric].median, p10: r[metric].p10, p90: r[metric].p90,
    model: r.model[metric], ideal: results.meta.idealTtfb,
  }));
  const order = configs.map((c) => `${c} (${configuration(c).paperName})`);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: TITLES[metric].title, anchor: 'start', subtitleLimit: 2000,
      subtitle: `bars: median of ${String(results.meta.runs)} runs; whiskers: p10-p90; black tick: model; dashed line: ideal (R = ${(results.meta.idealTtfb * 1000).toFixed(1)} ms); ${results.meta.cc}`,
    },
    data: { values },
    facet: { column: { field: 'size', type: 'ordinal', sort: sizes, title: 'file size', header: { labelFontSize: 12 } } },
    // First bytes share one scale across sizes; download times span 10 KB to 10 MB, so each size gets its own.
    resolve: { scale: { y: metric === 'ttfb' ? 'shared' : 'independent' } },
    spec: {
      width: Math.max(160, 40 * configs.length),
      height: 260,
      encoding: { x: { field: 'config', type: 'nominal', sort: order, axis: { labels: false, ticks: false, title: null } } },
      layer: [
        {
          mark: { type: 'bar' },
          encoding: {
            y: { field: 'median', type: 'quantitative', title: TITLES[metric].axis, scale: { zero: true } },
            color: { field: 'config', type: 'nominal', sort: order, title: 'configuration (paper name)', legend: { orient: 'bottom', columns: 2, labelLimit: 400, titleLimit: 400 } },
          },
        },
        { mark: { type: 'rule', color: '#333' }, encoding: { y: { field: 'p10', type: 'quantitative' }, y2: { field: 'p90' } } },
        { mark: { type: 'tick', color: 'black', thickness: 3 }, encoding: { y: { field: 'model', type: 'quantitative' } } },
        { mark: { type: 'rule', strokeDash: [6, 4], color: '#555' }, encoding: { y: { aggregate: 'max', field: 'ideal', type: 'quantitative' }, x: null } },
      ],
    },
    config: { font: 'DejaVu Sans', view: { stroke: '#ddd' } },
  } as TopLevelSpec;
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export function svgToPng(svg: string): Buffer {
  return new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
}

export interface Figure {
  readonly svg: string;
  readonly png: Buffer;
}

export async function renderFigure(results: Results, metric: Metric): Promise<Figure> {
  const svg = await renderSvg(figureSpec(results, metric));
  return { svg, png: svgToPng(svg) };
}
