import {
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { DeliveryOutcome } from '../delivery/send.js';
import { publicId } from '../ids.js';
import { attemptLabels, type Metrics } from './metrics.js';

/** What `emitArtifactEvent` returns, as far as telemetry reads it. */
export interface EmitOutcome {
  event: { id: string; eventType: string };
  runs: readonly { id: string }[];
  replayed: boolean;
}

/** One delivery attempt as it starts. */
export interface AttemptInfo {
  runId: string;
  attemptNumber: number;
  /** Where the request goes: a webhook's origin, or `slack`; null when it cannot be sent. */
  destination: string | null;
}

/** An attempt being observed; `end` is called once with what the attempt produced. */
export interface AttemptObservation {
  /**
   * Headers that carry the attempt's trace to the receiver (W3C `traceparent`, and `tracestate`
   * when there is one); absent when tracing is off.
   */
  headers: Readonly<Record<string, string>> | undefined;
  end(outcome: DeliveryOutcome): void;
}

/**
 * Metrics and traces, handed to the code that reports them. Either part may be off; each method
 * then does only what the parts that are on need, and nothing at all when both are off.
 */
export interface Telemetry {
  readonly metrics: Metrics | undefined;
  readonly tracer: Tracer | undefined;
  /**
   * Runs one `emitArtifactEvent` (sync or async) in an `emit` span and counts the event it
   * stored. Returns what `emit` returns; rethrows what it throws.
   */
  emit<T extends EmitOutcome | Promise<EmitOutcome>>(emit: () => T): T;
  /** Starts observing a delivery attempt: a client span (when tracing) and the attempt metrics. */
  attempt(info: AttemptInfo): AttemptObservation;
  /** A run was taken over after its lease expired with an attempt unfinished. */
  leaseExpired(): void;
}

/** Emit spans remembered so a run's attempts can link to the emit that queued it. */
const EMIT_LINKS_KEPT = 10_000;

const NO_HEADERS_OBSERVATION: AttemptObservation = { headers: undefined, end() {} };

/** Creates the telemetry of one app from the parts that are on. */
export function createTelemetry(parts: { metrics?: Metrics; tracer?: Tracer }): Telemetry {
  const { metrics, tracer } = parts;
  const emitSpans = new Map<string, SpanContext>();

  const counted = (outcome: EmitOutcome, span: Span | undefined): void => {
    if (!outcome.replayed) metrics?.eventIngested(outcome.event.eventType);
    if (!span) return;
    span.setAttributes({
      'tripline.event.id': publicId('event', outcome.event.id),
      'tripline.event.type': outcome.event.eventType,
      'tripline.event.replayed': outcome.replayed,
      'tripline.runs.queued': outcome.runs.length,
    });
    if (outcome.replayed) return;
    const spanContext = span.spanContext();
    for (const run of outcome.runs) {
      if (emitSpans.size >= EMIT_LINKS_KEPT) {
        const oldest = emitSpans.keys().next().value;
        if (oldest !== undefined) emitSpans.delete(oldest);
      }
      emitSpans.set(run.id, spanContext);
    }
  };

  const failed = (span: Span, error: unknown): void => {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
  };

  return {
    metrics,
    tracer,
    emit(emit) {
      if (!tracer) {
        const result = emit();
        if (result instanceof Promise) {
          return result.then((outcome) => {
            counted(outcome, undefined);
            return outcome;
          }) as typeof result;
        }
        counted(result as EmitOutcome, undefined);
        return result;
      }
      return tracer.startActiveSpan('emit', { kind: SpanKind.INTERNAL }, (span) => {
        let result: ReturnType<typeof emit>;
        try {
          result = emit();
        } catch (error) {
          failed(span, error);
          span.end();
          throw error;
        }
        if (result instanceof Promise) {
          return result.then(
            (outcome) => {
              counted(outcome, span);
              span.end();
              return outcome;
            },
            (error: unknown) => {
              failed(span, error);
              span.end();
              throw error;
            },
          ) as typeof result;
        }
        counted(result as EmitOutcome, span);
        span.end();
        return result;
      });
    },
    attempt(info) {
      if (!metrics && !tracer) return NO_HEADERS_OBSERVATION;
      let span: Span | undefined;
      let headers: Record<string, string> | undefined;
      if (tracer) {
        // Attempts run from the engine's timers, so each starts a trace of its own, linked to
        // the emit that queued its run when this process saw it.
        const emitted = emitSpans.get(info.runId);
        const links: Link[] = emitted ? [{ context: emitted }] : [];
        span = tracer.startSpan(
          'delivery attempt',
          {
            kind: SpanKind.CLIENT,
            root: true,
            links,
            attributes: {
              'tripline.run.id': publicId('run', info.runId),
              'tripline.attempt.number': info.attemptNumber,
              'http.request.method': 'POST',
              ...(info.destination === null ? {} : { 'tripline.destination': info.destination }),
            },
          },
          ROOT_CONTEXT,
        );
        headers = {};
        propagation.inject(trace.setSpan(ROOT_CONTEXT, span), headers);
      }
      return {
        headers,
        end(outcome) {
          if (outcome.errorClass !== 'ABORTED') metrics?.attemptEnded(outcome);
          if (!span) return;
          if (outcome.statusCode !== undefined) {
            span.setAttribute('http.response.status_code', outcome.statusCode);
          }
          const labels = attemptLabels(outcome);
          if (labels.outcome !== 'success') {
            span.setAttribute('error.type', labels.errorClass);
            span.setStatus({
              code: SpanStatusCode.ERROR,
              ...(outcome.errorMessage ? { message: outcome.errorMessage } : {}),
            });
          } else emitSpans.delete(info.runId);
          span.end();
        },
      };
    },
    leaseExpired() {
      metrics?.leaseExpired();
    },
  };
}
