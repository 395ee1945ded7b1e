/**
 * Keyset paging as the storage layer offers it, free of any database engine: a list has its own
 * sort order (a store documents it), and a request reads the rows between two positions in it.
 * A position is the values of a row's sort key, so it survives inserts and deletes.
 */

/** One value of a sort key, as stored (times as epoch milliseconds). */
export type KeyValue = string | number;

/** One end of a range: rows beyond `position` (and the row at it when `inclusive`). */
export interface Bound {
  position: readonly KeyValue[];
  inclusive: boolean;
}

/** A range of a list to read. */
export interface PageRequest {
  /** Rows after this bound in list order; null: from the start. */
  after: Bound | null;
  /** Rows before this bound in list order; null: to the end. */
  before: Bound | null;
  /** Read from the end of the range: rows come back in reverse list order. */
  backward: boolean;
  /** At most this many rows. */
  limit: number;
}
