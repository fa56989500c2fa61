/**
 * A small SVG plot of several series over time (one per deployment version and measure), built
 * on the Runs panel's plot helpers.
 */

import { formatValue, plotFrame, scale, svg, text } from '../tracking/plot';

/**
 * One curve: its points (`x` in epoch ms; `y` null where there is no value, not drawn).
 */
export interface ITimeSeries {
  /** What the curve is, for the tooltip: `v2 p95`. */
  label: string;
  /** Class names of the curve (its colour, a dashed stroke). */
  className: string;
  /** Data attributes of the curve (`version`, `measure`), for tests and styles. */
  data: { [name: string]: string };
  points: { x: number; y: number | null }[];
}

/**
 * Options of {@link timePlot}.
 */
export interface ITimePlotOptions {
  /** What is plotted, for screen readers. */
  label: string;
  width?: number;
  height?: number;
  /** Draw a dot on each point of a curve that has at most this many. */
  maxDots?: number;
}

/**
 * An SVG plot of `series` against time, with 0 at the bottom of the y axis (counts and
 * latencies start there) and the first and last minute as x labels. Each curve is one
 * `<polyline>` with its own `data-points`; the root's `data-points` counts them all.
 */
export function timePlot(series: ITimeSeries[], options: ITimePlotOptions): SVGSVGElement {
  const width = options.width ?? 240;
  const height = options.height ?? 110;
  const maxDots = options.maxDots ?? 30;
  const curves = series.map(s => ({
    ...s,
    drawn: s.points.filter(
      (p): p is { x: number; y: number } => p.y !== null && Number.isFinite(p.y)
    )
  }));
  const all = curves.flatMap(c => c.drawn);
  const { root, area } = plotFrame({
    width,
    height,
    className: 'jp-himalia-plot jp-himalia-time-plot',
    title: `${options.label}: ${curves
      .map(c => `${c.label} ${c.drawn.length} points`)
      .join(', ')}`,
    points: all.length,
    empty: 'no requests'
  });
  if (all.length === 0) {
    return root;
  }
  const { left, top, width: innerWidth, height: innerHeight } = area;

  const xs = all.map(p => p.x);
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const yMax = Math.max(...all.map(p => p.y));
  const px = (x: number) => scale(x, xMin, xMax, left, innerWidth);
  // SVG's y axis points down; a flat zero line is drawn at the bottom, not centred.
  const py = (y: number) =>
    yMax === 0 ? top + innerHeight : scale(y, yMax, 0, top, innerHeight);

  for (const curve of curves) {
    const group = svg('g', { class: curve.className });
    for (const [name, value] of Object.entries(curve.data)) {
      group.dataset[name] = value;
    }
    const line = svg('polyline', {
      points: curve.drawn.map(p => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' '),
      class: 'jp-himalia-time-plot-line',
      fill: 'none',
      'data-points': curve.drawn.length
    });
    const title = svg('title', {});
    title.textContent = curve.label;
    line.appendChild(title);
    group.appendChild(line);
    if (curve.drawn.length <= maxDots) {
      for (const p of curve.drawn) {
        group.appendChild(
          svg('circle', {
            cx: px(p.x).toFixed(1),
            cy: py(p.y).toFixed(1),
            r: 1.8,
            class: 'jp-himalia-time-plot-dot'
          })
        );
      }
    }
    root.appendChild(group);
  }
  root.append(
    text(left - 4, top + 8, formatValue(yMax), 'end'),
    text(left - 4, top + innerHeight, '0', 'end'),
    text(left, height - 6, formatMinute(xMin), 'start'),
    text(left + innerWidth, height - 6, formatMinute(xMax), 'end')
  );
  return root;
}

/**
 * A minute as the browser's clock shows it: `14:05`.
 */
export function formatMinute(millis: number): string {
  return new Date(millis).toLocaleTimeString(undefined, {
    hour: '2-digit',
    minute: '2-digit'
  });
}
