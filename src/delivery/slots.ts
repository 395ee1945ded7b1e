/**
 * How the engine shares its `concurrency` delivery slots between destinations, so that a
 * receiver that hangs on every request cannot hold them all while others wait, yet a single busy
 * receiver can use every slot nobody else needs.
 *
 * - Each destination is entitled to a share: half the slots, rounded up.
 * - While runs of other destinations may be waiting, a destination at its share gets no more
 *   (fair claims pass its actions over).
 * - When nothing else waits, a destination may borrow idle slots beyond its share, but only
 *   while it is *responsive*: its latest attempt got an HTTP answer within `patienceMs`, and none
 *   of its attempts in flight has run longer. A destination that hangs never proves itself, so
 *   it stays at its share; one that starts hanging while borrowing stops borrowing within
 *   `patienceMs`, and the slots it holds come back within the attempt deadline.
 * - Borrowed slots are returned as their attempts end; the next claim is fair again whenever new
 *   runs may be waiting (the engine is woken or polls), or a destination drops below its share
 *   while another borrows (its runs passed over before may be waiting).
 *
 * Destinations are identified by the engine (see `destinationOf` there); the SQL claim knows
 * actions, not destinations, so each destination remembers the actions seen to lead to it, and a
 * claim passes those over. A run claimed for a full destination through an action not yet seen
 * is handed back (see {@link DestinationSlots.admit}).
 */
export interface DestinationSlots {
  /** Slots one destination may use while others may be waiting. */
  readonly share: number;
  /**
   * Actions whose runs the next claim must pass over: those of destinations at their share that
   * may not borrow (every destination at its share when `fair`).
   */
  passOver(fair: boolean, now: number): string[];
  /**
   * Takes a slot at `now` for a claimed run of `destination` through `actionId`, unless the
   * destination is at its share and may not borrow (never when `fair`). Null when refused: the
   * run goes back to the queue, and its action is passed over from then on.
   */
  admit(destination: string, actionId: string, fair: boolean, now: number): Slot | null;
  /**
   * Whether a destination dropped below its share, while another holds more than its share,
   * since this was last asked: the first one's waiting runs, if any, come before the borrower's.
   */
  takeFreedShare(): boolean;
}

/** A slot in use by one run. */
export interface Slot {
  /** Gives the slot back when the run's attempt has ended, saying what it showed. Idempotent. */
  release(health: AttemptHealth): void;
}

/** What an ended attempt says about its destination's health. */
export type AttemptHealth =
  /** An HTTP answer: the receiver works; responsive if it came within patience. */
  | { answered: true; durationMs: number }
  /** A timeout or a network error: the receiver does not answer. */
  | { answered: false }
  /** No request reached the receiver (none made, or aborted): says nothing. */
  | null;

interface Destination {
  /** Admission times of the slots in use. */
  slots: Set<{ admittedAt: number }>;
  /** Actions seen to lead here, while a slot is in use. */
  actions: Set<string>;
  /** The latest attempt that said anything got an answer within patience. */
  proven: boolean;
}

/** Destinations remembered beyond those in use, for their health. */
const REMEMBERED = 1_024;

export function createDestinationSlots(options: {
  concurrency: number;
  /** How long a responsive destination may take to answer; see {@link DestinationSlots}. */
  patienceMs: number;
}): DestinationSlots {
  const share = Math.max(1, Math.ceil(options.concurrency / 2));
  const destinations = new Map<string, Destination>();
  let freedShare = false;

  const get = (key: string): Destination => {
    let destination = destinations.get(key);
    if (destination === undefined) {
      destination = { slots: new Set(), actions: new Set(), proven: false };
      destinations.set(key, destination);
      if (destinations.size > REMEMBERED) {
        for (const [other, entry] of destinations) {
          if (entry.slots.size === 0 && other !== key) {
            destinations.delete(other);
            break;
          }
        }
      }
    }
    return destination;
  };

  const responsive = (destination: Destination, now: number): boolean => {
    if (!destination.proven) return false;
    for (const slot of destination.slots) {
      if (now - slot.admittedAt > options.patienceMs) return false;
    }
    return true;
  };

  const full = (destination: Destination, fair: boolean, now: number): boolean =>
    destination.slots.size >= share && (fair || !responsive(destination, now));

  return {
    share,
    passOver(fair, now) {
      const actions: string[] = [];
      for (const destination of destinations.values()) {
        if (destination.slots.size > 0 && full(destination, fair, now)) {
          actions.push(...destination.actions);
        }
      }
      return actions;
    },
    admit(key, actionId, fair, now) {
      const destination = get(key);
      destination.actions.add(actionId);
      if (full(destination, fair, now)) return null;
      const entry = { admittedAt: now };
      destination.slots.add(entry);
      let released = false;
      return {
        release(health) {
          if (released) return;
          released = true;
          destination.slots.delete(entry);
          if (health !== null) {
            destination.proven = health.answered && health.durationMs <= options.patienceMs;
          }
          if (destination.slots.size === share - 1) freedShare = true;
          // Forget which actions lead here once none is in use: an action's URL may change.
          if (destination.slots.size === 0) destination.actions.clear();
        },
      };
    },
    takeFreedShare() {
      if (!freedShare) return false;
      freedShare = false;
      for (const destination of destinations.values()) {
        if (destination.slots.size > share) return true;
      }
      return false;
    },
  };
}
