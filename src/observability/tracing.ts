import { readFileSync } from 'node:fs';
import { type DiagLogger, DiagLogLevel, diag, type Tracer, trace } from '@opentelemetry/api';
import type { TracingConfig } from '../config.js';
import type { Logger } from '../logger.js';

export interface Tracing {
  tracer: Tracer;
  /** Sends the spans still buffered and stops exporting. */
  shutdown(): Promise<void>;
}

const { version } = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };

/**
 * The ids of the span active where a log line is written, so logs and traces can be joined.
 * Only installed in the logger when tracing is on.
 */
export function traceLogFields(): object {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return { traceId, spanId };
}

/**
 * Starts tracing for this process when `config` says so, and returns undefined otherwise
 * without loading the SDK. Registers a tracer provider globally (with the AsyncLocalStorage
 * context manager and the W3C `traceparent` propagator), batching spans to an OTLP/HTTP exporter
 * that reads its endpoint, headers and timeout from the standard `OTEL_EXPORTER_OTLP_*`
 * variables. Export problems are logged as warnings, never thrown.
 */
export async function startTracing(
  config: TracingConfig,
  logger: Logger,
): Promise<Tracing | undefined> {
  if (!config.enabled) return undefined;
  const [sdk, resources, exporters] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/resources'),
    config.protocol === 'http/json'
      ? import('@opentelemetry/exporter-trace-otlp-http')
      : import('@opentelemetry/exporter-trace-otlp-proto'),
  ]);
  const log = logger.child({ component: 'tracing' });
  const diagLogger: DiagLogger = {
    error: (message, ...args) => log.error({ args }, message),
    warn: (message, ...args) => log.warn({ args }, message),
    info: () => {},
    debug: () => {},
    verbose: () => {},
  };
  diag.setLogger(diagLogger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the env detector) win over these defaults.
  const resource = resources
    .defaultResource()
    .merge(
      resources.resourceFromAttributes({ 'service.name': 'tripline', 'service.version': version }),
    )
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new sdk.NodeTracerProvider({
    resource,
    spanProcessors: [new sdk.BatchSpanProcessor(new exporters.OTLPTraceExporter())],
  });
  provider.register();
  log.info({ protocol: config.protocol }, 'tracing on: spans are exported over OTLP/HTTP');
  return {
    tracer: trace.getTracer('tripline', version),
    shutdown: () => provider.shutdown(),
  };
}
