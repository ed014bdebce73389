// The data behind a run's HTML report: tables and the series its SVG charts draw. Every command
// that takes --report fills one of these; html.ts renders it.

export interface ReportTable {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
  /** A sentence under the table that says what it shows. */
  note?: string;
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
  /** Fault latency histogram: log2 buckets; count of faults whose latency fell in [lowNs, highNs). */
  faultLatency: Array<{ lowNs: number; highNs: number; count: number }>;
  /** Throughput over time: faults per second in each sampling interval. */
  throughput: Array<{ tMs: number; faultsPerSecond: number }>;
  /** Time spent waiting for each lock class, and how often it was contended. */
  lockWaits: Array<{ lock: string; waitMs: number; contended: number }>;
}
