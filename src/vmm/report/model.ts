// The data behind a run's HTML report: tables and the series its SVG charts draw. Every command
// that takes --report fills one of these; html.ts renders it.

export interface ReportTable {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
  /** A sentence under the table that says what it shows. */
  note?: string;
  /** Paragraphs under the table, one per run it compares, each opening with `lead` (the kernel version). */
  paragraphs?: Array<{ lead: string; text: string }>;
}

/** Who owns each page of one inode at the end of each run: one character a page. */
export interface PageMap {
  title: string;
  /** What each character means, in order: ['0', 'VM 0'], ['.', 'hypervisor-owned'], ... */
  key: Array<[string, string]>;
  /** Pages a row: rows are laid out whole, so page i sits in row floor(i / rowPages). */
  rowPages: number;
  maps: Array<{ name: string; pages: string }>;
}

export type FaultLatency = Array<{ lowNs: number; highNs: number; count: number }>;
export type Throughput = Array<{ tMs: number; faultsPerSecond: number }>;
export type LockWaits = Array<{ lock: string; waitMs: number; contended: number }>;

/** One run's chart data, labelled for a legend. */
export interface ChartSeries {
  /** The legend's label: the kernel version (and its prepare policy) the run modelled. */
  name: string;
  faultLatency: FaultLatency;
  throughput: Throughput;
  lockWaits: LockWaits;
}

export interface ReportData {
  title: string;
  /** The command line that produced the run, so it can be rerun. */
  command: string;
  seed?: number;
  generatedAt: string;
  /** Key facts shown at the top: policy, duration, verdict... */
  summary: Array<[string, string | number]>;
  tables: ReportTable[];
  /** Page-owner maps, shown after the tables. */
  pageMaps?: PageMap[];
  /** Fault latency histogram: log2 buckets; count of faults whose latency fell in [lowNs, highNs). */
  faultLatency: FaultLatency;
  /** Throughput over time: faults per second in each sampling interval. */
  throughput: Throughput;
  /** Time spent waiting for each lock class, and how often it was contended. */
  lockWaits: LockWaits;
  /**
   * Several runs side by side (an experiment's kernel versions): when set, each chart draws one
   * labelled series per entry with a legend, in place of the single run's fields above.
   */
  series?: ChartSeries[];
}
