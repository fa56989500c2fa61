/**
 * A small SVG line plot: one metric's values over steps, drawn without a plotting library.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * One point of a curve; `y` is null for a value that is not a finite number (not drawn).
 */
export interface IPoint {
  x: number;
  y: number | null;
}

/**
 * Options of {@link linePlot}.
 */
export interface ILinePlotOptions {
  /** What the curve is, for screen readers and the tooltip (the metric's key). */
  label: string;
  width?: number;
  height?: number;
  /** Draw a dot on each point when there are at most this many. */
  maxDots?: number;
}

const MARGIN = { top: 8, right: 10, bottom: 20, left: 48 };

/**
 * A number as a short tick label: 4 significant digits, exponent form when tiny or huge.
 */
export function formatValue(value: number): string {
  if (value === 0) {
    return '0';
  }
  const magnitude = Math.abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) {
    return value.toExponential(2);
  }
  return String(Number(value.toPrecision(4)));
}

/**
 * Map data coordinates to pixels inside `[left, left + width] x [top, top + height]`.
 * A flat range (one distinct value) is centred.
 */
export function scale(
  value: number,
  min: number,
  max: number,
  start: number,
  length: number
): number {
  if (max === min) {
    return start + length / 2;
  }
  return start + ((value - min) / (max - min)) * length;
}

/**
 * A new SVG element with its attributes.
 */
export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: { [name: string]: string | number }
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, String(value));
  }
  return node;
}

/**
 * An axis label at (`x`, `y`).
 */
export function text(
  x: number,
  y: number,
  content: string,
  anchor: 'start' | 'middle' | 'end'
): SVGTextElement {
  const node = svg('text', {
    x,
    y,
    'text-anchor': anchor,
    class: 'jp-himalia-plot-tick'
  });
  node.textContent = content;
  return node;
}

/**
 * Where an SVG plot draws its curves: inside the margins its axis labels take.
 */
export interface IPlotArea {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * An SVG plot without curves yet: its title (also its accessible name), `data-points` with the
 * count of points it will draw, and the frame of its plot area, with `empty` written in the
 * middle when that count is 0.
 */
export function plotFrame(options: {
  width: number;
  height: number;
  className: string;
  title: string;
  points: number;
  empty: string;
}): { root: SVGSVGElement; area: IPlotArea } {
  const { width, height } = options;
  const root = svg('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    class: options.className,
    role: 'img',
    'data-points': options.points
  });
  const title = svg('title', {});
  title.textContent = options.title;
  root.setAttribute('aria-label', options.title);
  root.appendChild(title);

  const area = {
    left: MARGIN.left,
    top: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right,
    height: height - MARGIN.top - MARGIN.bottom
  };
  root.appendChild(
    svg('rect', {
      x: area.left,
      y: area.top,
      width: area.width,
      height: area.height,
      class: 'jp-himalia-plot-frame'
    })
  );
  if (options.points === 0) {
    root.appendChild(
      text(area.left + area.width / 2, area.top + area.height / 2, options.empty, 'middle')
    );
  }
  return { root, area };
}

/**
 * An SVG line plot of `points` (drawn in the order given, x ascending), with the first and
 * last x and the lowest and highest y as axis labels. The curve is one `<polyline>` with one
 * coordinate pair per finite point; the element carries `data-points` with that count.
 */
export function linePlot(
  points: IPoint[],
  options: ILinePlotOptions
): SVGSVGElement {
  const width = options.width ?? 240;
  const height = options.height ?? 110;
  const maxDots = options.maxDots ?? 40;
  const drawn = points.filter(
    (p): p is { x: number; y: number } => p.y !== null && Number.isFinite(p.y)
  );
  const { root, area } = plotFrame({
    width,
    height,
    className: 'jp-himalia-plot',
    title: `${options.label}: ${drawn.length} point${drawn.length === 1 ? '' : 's'}`,
    points: drawn.length,
    empty: 'no finite values'
  });
  if (drawn.length === 0) {
    return root;
  }
  const { left, top, width: innerWidth, height: innerHeight } = area;

  const xs = drawn.map(p => p.x);
  const ys = drawn.map(p => p.y);
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const [yMin, yMax] = [Math.min(...ys), Math.max(...ys)];
  // SVG's y axis points down: the highest value goes to the top.
  const px = (x: number) => scale(x, xMin, xMax, left, innerWidth);
  const py = (y: number) => scale(y, yMax, yMin, top, innerHeight);
  const coordinates = drawn.map(p => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`);

  root.appendChild(
    svg('polyline', {
      points: coordinates.join(' '),
      class: 'jp-himalia-plot-line',
      fill: 'none'
    })
  );
  if (drawn.length <= maxDots) {
    for (const p of drawn) {
      root.appendChild(
        svg('circle', {
          cx: px(p.x).toFixed(1),
          cy: py(p.y).toFixed(1),
          r: 2,
          class: 'jp-himalia-plot-dot'
        })
      );
    }
  }
  root.append(
    text(left - 4, top + 8, formatValue(yMax), 'end'),
    text(left - 4, top + innerHeight, formatValue(yMin), 'end'),
    text(left, height - 6, `step ${xMin}`, 'start'),
    text(left + innerWidth, height - 6, `${xMax}`, 'end')
  );
  return root;
}
