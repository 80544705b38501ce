// Vital signs over time, one small chart per measurement (heart rate, blood pressure,
// weight…), drawn as SVG shapes (no canvas, no inline style: the CSP allows neither). Each
// chart says in words what it shows, for screen readers; the table below it has every value.
import { type Observation, conceptText } from './fhir';

/** Drawing area, in SVG units. */
const WIDTH = 320;
const HEIGHT = 120;
const PAD = 8;

interface Series {
  name: string;
  unit: string;
  /** Lines of one chart: one for most measurements, two (systolic, diastolic) for blood pressure. */
  lines: { label: string; points: { at: number; value: number }[] }[];
}

function timeOf(observation: Observation): number {
  return new Date(observation.effectiveDateTime ?? observation.issued ?? 0).getTime();
}

/** Groups measurements by what they measure, oldest first. */
export function seriesOf(observations: Observation[]): Series[] {
  const groups = new Map<string, Series>();
  const sorted = [...observations].sort((a, b) => timeOf(a) - timeOf(b));
  for (const observation of sorted) {
    const at = timeOf(observation);
    if (!Number.isFinite(at)) continue;
    const key = observation.code.coding?.[0]?.code ?? conceptText(observation.code);
    const name = conceptText(observation.code);
    const values: [string, number | undefined, string | undefined][] = observation.valueQuantity
      ? [[name, observation.valueQuantity.value, observation.valueQuantity.unit]]
      : (observation.component ?? []).map((c) => [conceptText(c.code), c.valueQuantity?.value, c.valueQuantity?.unit]);
    for (const [label, value, unit] of values) {
      if (value === undefined || !Number.isFinite(value)) continue;
      let series = groups.get(key);
      if (!series) {
        series = { name, unit: unit ?? '', lines: [] };
        groups.set(key, series);
      }
      let line = series.lines.find((l) => l.label === label);
      if (!line) {
        line = { label, points: [] };
        series.lines.push(line);
      }
      line.points.push({ at, value });
    }
  }
  return [...groups.values()];
}

function day(at: number): string {
  return new Date(at).toLocaleDateString(undefined, { dateStyle: 'medium' });
}

function Chart(props: { series: Series }) {
  const { series } = props;
  const points = series.lines.flatMap((l) => l.points);
  const [minAt, maxAt] = [Math.min(...points.map((p) => p.at)), Math.max(...points.map((p) => p.at))];
  const [minValue, maxValue] = [Math.min(...points.map((p) => p.value)), Math.max(...points.map((p) => p.value))];
  const x = (at: number) => (maxAt === minAt ? WIDTH / 2 : PAD + ((at - minAt) / (maxAt - minAt)) * (WIDTH - 2 * PAD));
  const y = (value: number) =>
    maxValue === minValue ? HEIGHT / 2 : HEIGHT - PAD - ((value - minValue) / (maxValue - minValue)) * (HEIGHT - 2 * PAD);
  const latest = series.lines.map((l) => l.points[l.points.length - 1]!.value).join('/');
  const description =
    `${series.name}: ${points.length} readings from ${day(minAt)} to ${day(maxAt)}, ` +
    `between ${minValue} and ${maxValue} ${series.unit}; latest ${latest} ${series.unit}.`;
  return (
    <figure class="vital">
      <figcaption>
        <strong>{series.name}</strong> <span class="detail">latest {latest} {series.unit}</span>
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={description}>
        <line x1={PAD} y1={HEIGHT - PAD} x2={WIDTH - PAD} y2={HEIGHT - PAD} class="axis" />
        {series.lines.map((line, index) => (
          <g key={line.label} class={`series-${index}`}>
            <polyline points={line.points.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ')} />
            {line.points.map((p) => (
              <circle key={p.at} cx={x(p.at).toFixed(1)} cy={y(p.value).toFixed(1)} r="3" />
            ))}
          </g>
        ))}
      </svg>
      <div class="vital-scale" aria-hidden="true">
        <span>{day(minAt)}</span>
        <span>
          {minValue}–{maxValue} {series.unit}
        </span>
        <span>{day(maxAt)}</span>
      </div>
    </figure>
  );
}

export function VitalsCharts(props: { observations: Observation[] }) {
  const all = seriesOf(props.observations);
  if (all.length === 0) return null;
  return (
    <div class="vitals-charts" data-testid="vitals-charts">
      {all.map((series) => (
        <Chart key={series.name} series={series} />
      ))}
    </div>
  );
}
