import type { ChartSeries } from './results.ts';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const label = (n: number) => (n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n));

/** A log-log line chart (x: entries, y: ms), one line per tool, as a standalone SVG. */
export function lineChartSvg(title: string, series: ChartSeries[], axes: { x: string; y: string }): string {
  const W = 720;
  const H = 420;
  const m = { l: 70, r: 210, t: 40, b: 50 };
  const points = series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && y > 0);
  if (points.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="60"><text x="10" y="30">${esc(title)}: no data</text></svg>\n`;
  const lx = points.map(([x]) => Math.log10(x));
  const ly = points.map(([, y]) => Math.log10(y));
  const [x0, x1] = [Math.floor(Math.min(...lx)), Math.ceil(Math.max(...lx))];
  const [y0, y1] = [Math.floor(Math.min(...ly)), Math.ceil(Math.max(...ly))];
  const sx = (x: number) => m.l + ((Math.log10(x) - x0) / Math.max(1, x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((Math.log10(y) - y0) / Math.max(1, y1 - y0)) * (H - m.t - m.b);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  for (let e = x0; e <= x1; e++) {
    const x = sx(10 ** e);
    out.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${H - m.b}" stroke="#ddd"/>`, `<text x="${x}" y="${H - m.b + 16}" text-anchor="middle">${label(10 ** e)}</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    const y = sy(10 ** e);
    out.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#ddd"/>`, `<text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${label(10 ** e)}</text>`);
  }
  out.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(axes.x)}</text>`,
    `<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(axes.y)}</text>`,
  );
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of pts) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(s.tool)}: ${label(x)} entries, ${y.toFixed(0)} ms</title></circle>`);
    const ly0 = m.t + 10 + i * 20;
    out.push(`<line x1="${W - m.r + 14}" y1="${ly0}" x2="${W - m.r + 34}" y2="${ly0}" stroke="${color}" stroke-width="2"/>`, `<text x="${W - m.r + 40}" y="${ly0 + 4}">${esc(s.tool)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
