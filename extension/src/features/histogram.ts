/**
 * A feature's histogram as SVG bars, built on the Runs panel's plot helpers.
 */

import { formatValue, plotFrame, scale, svg, text } from '../tracking/plot';

/**
 * Options of {@link histogramPlot}.
 */
export interface IHistogramOptions {
  /** The feature, for the title and screen readers. */
  label: string;
  width?: number;
  height?: number;
}

/**
 * An SVG histogram: one `<rect class="jp-himalia-histogram-bar">` per bin, left to right, as
 * tall as its count (0 at the bottom), each with `data-count` and a tooltip giving its range.
 * `edges` has one more entry than `counts`; the first and last edges and the highest count are
 * the axis labels. The root's `data-points` is the number of bins.
 */
export function histogramPlot(
  edges: number[],
  counts: number[],
  options: IHistogramOptions
): SVGSVGElement {
  const width = options.width ?? 240;
  const height = options.height ?? 90;
  const bins = edges.length === counts.length + 1 ? counts.length : 0;
  const total = counts.reduce((sum, n) => sum + n, 0);
  const { root, area } = plotFrame({
    width,
    height,
    className: 'jp-himalia-plot jp-himalia-histogram',
    title: `${options.label}: ${bins} bin${bins === 1 ? '' : 's'}, ${total} values`,
    points: bins,
    empty: 'no values'
  });
  if (bins === 0) {
    return root;
  }
  const { left, top, width: innerWidth, height: innerHeight } = area;
  const highest = Math.max(...counts);
  const barWidth = innerWidth / bins;
  counts.forEach((count, bin) => {
    const barHeight = highest === 0 ? 0 : scale(count, 0, highest, 0, innerHeight);
    const last = bin === bins - 1;
    const bar = svg('rect', {
      x: (left + bin * barWidth + 0.5).toFixed(1),
      y: (top + innerHeight - barHeight).toFixed(1),
      width: Math.max(barWidth - 1, 0.5).toFixed(1),
      height: barHeight.toFixed(1),
      class: 'jp-himalia-histogram-bar',
      'data-count': count
    });
    const tooltip = svg('title', {});
    tooltip.textContent =
      `[${formatValue(edges[bin])}, ${formatValue(edges[bin + 1])}${last ? ']' : ')'}: ` +
      `${count}`;
    bar.appendChild(tooltip);
    root.appendChild(bar);
  });
  root.append(
    text(left - 4, top + 8, String(highest), 'end'),
    text(left - 4, top + innerHeight, '0', 'end'),
    text(left, height - 6, formatValue(edges[0]), 'start'),
    text(left + innerWidth, height - 6, formatValue(edges[bins]), 'end')
  );
  return root;
}
