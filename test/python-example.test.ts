import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { signPayload } from '../src/delivery/signing.js';
import { createTestApp, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

/** The Python client under test, run by the machine's interpreter (TRIPLINE_TEST_PYTHON to pick another). */
const EXAMPLES = fileURLToPath(new URL('../examples/python/', import.meta.url));
const PYTHON = process.env.TRIPLINE_TEST_PYTHON ?? 'python3';
const version = spawnSync(PYTHON, ['--version'], { encoding: 'utf8' });
const hasPython = version.status === 0 && /Python 3\./.test(version.stdout + version.stderr);
if (!hasPython) {
  console.warn(
    `\n*** SKIPPED: test/python-example.test.ts runs examples/python with "${PYTHON}", and there is none (or it is not Python 3). Install Python 3.8 or later (\`apt-get install -y python3\`), or point TRIPLINE_TEST_PYTHON at one. ***\n`,
  );
}

/** Prepended to every script: the module, and `out(**fields)` printing one JSON line. */
const PRELUDE = `
import json, os, random, sys, time
import tripline
def out(**fields):
    print(json.dumps(fields), flush=True)
`;

// biome-ignore lint/suspicious/noExplicitAny: scripts print arbitrary JSON
type Line = Record<string, any>;

interface PythonProcess {
  child: ChildProcess;
  /** JSON lines printed so far. */
  lines: Line[];
  /** Resolves with the first line (already printed or to come) for which `match` holds. */
  line(match: (line: Line) => boolean): Promise<Line>;
  /** Resolves once the process ends, with everything it wrote. */
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

const children: ChildProcess[] = [];

/** Starts `python3 -c PRELUDE+script` (or a file under examples/python with `args`). */
function startPython(
  script: string | { file: string; args: string[] },
  env: Record<string, string>,
): PythonProcess {
  const args =
    typeof script === 'string' ? ['-c', PRELUDE + script] : [script.file, ...script.args];
  const child = spawn(PYTHON, args, {
    cwd: EXAMPLES,
    env: {
      ...process.env,
      PYTHONPATH: EXAMPLES,
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHONUNBUFFERED: '1',
      ...env,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: Line[] = [];
  const waiters: { match: (line: Line) => boolean; resolve: (line: Line) => void }[] = [];
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    partial += chunk.toString();
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    for (const text of complete) {
      if (!text.startsWith('{')) continue;
      const line = JSON.parse(text) as Line;
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.match(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return {
    child,
    lines,
    line: (match) => {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return Promise.race([
        new Promise<Line>((resolve) => waiters.push({ match, resolve })),
        exited.then(({ code, stdout, stderr }) => {
          throw new Error(`python exited (${code}) first:\n${stdout}\n${stderr}`);
        }),
      ]);
    },
    exited,
  };
}

/** Runs a script to its end; fails the test when it exits non-zero. Returns its JSON lines. */
async function runPython(
  script: string,
  env: Record<string, string>,
  input?: string,
): Promise<Line[]> {
  const python = startPython(script, env);
  python.child.stdin?.end(input ?? '');
  const { code, stdout, stderr } = await python.exited;
  expect(code, `${stdout}\n${stderr}`).toBe(0);
  return python.lines;
}

/** One behaviour of the flaky proxy, per request, in order; `forward` once they run out. */
type ProxyStep =
  | 'forward'
  /** Forward the request, then answer 503 instead of the server's answer (a lost response). */
  | 'lost'
  /** Close the connection without an answer. */
  | 'reset'
  /** Never answer. */
  | 'hang'
  | { status: number; headers?: Record<string, string>; body?: string };

interface FlakyProxy {
  url: string;
  /** Every request body received, in order. */
  bodies: string[];
  close(): Promise<void>;
}

/** A loopback HTTP proxy in front of the GraphQL server that misbehaves as `steps` say. */
async function startFlakyProxy(target: string, steps: ProxyStep[]): Promise<FlakyProxy> {
  const bodies: string[] = [];
  const forward = async (req: IncomingMessage, body: string) => {
    const response = await fetch(target, {
      method: 'POST',
      headers: {
        'content-type': req.headers['content-type'] ?? 'application/json',
        accept: req.headers.accept ?? 'application/json',
        authorization: req.headers.authorization ?? '',
      },
      body,
    });
    return {
      status: response.status,
      type: response.headers.get('content-type') ?? 'application/json',
      body: await response.text(),
    };
  };
  const handle = async (req: IncomingMessage, res: ServerResponse, body: string) => {
    bodies.push(body);
    const step = steps.shift() ?? 'forward';
    if (step === 'hang') return;
    if (step === 'reset') {
      req.socket.destroy();
      return;
    }
    if (step === 'forward' || step === 'lost') {
      const answer = await forward(req, body);
      if (step === 'lost') {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('upstream hiccup');
        return;
      }
      res.writeHead(answer.status, { 'content-type': answer.type }).end(answer.body);
      return;
    }
    res.writeHead(step.status, step.headers ?? {}).end(step.body ?? '');
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks).toString('utf8')).catch(() => req.socket.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/graphql`,
    bodies,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const RATE_LIMITED = (seconds: number): ProxyStep => ({
  status: 429,
  headers: { 'content-type': 'application/json', 'retry-after': String(seconds) },
  body: JSON.stringify({
    errors: [
      {
        message: 'Too many requests.',
        extensions: { code: 'RATE_LIMITED', retryAfterSeconds: seconds },
      },
    ],
  }),
});

let t: TestApp;
let url: string;
let receiver: Receiver;
let signingSecret: string;
let actionId: string;
let proxy: FlakyProxy | undefined;
let env: Record<string, string>;

const eventCount = async (): Promise<number> =>
  (await t.gql('{ entity(name: "default") { events { totalCount } } }')).data.entity.events
    .totalCount;

/** Resolves once the server holds exactly `size` subscriptions. */
const hubSize = (size: number): Promise<void> =>
  new Promise((resolve) => {
    const check = () => {
      if (t.app.hub.size !== size) return;
      stop();
      resolve();
    };
    const stop = t.app.hub.watch(check);
    check();
  });

describe.skipIf(!hasPython)('examples/python against a live server', () => {
  beforeEach(async () => {
    t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
    url = await t.listen();
    receiver = await startReceiver();
    await createProject(t, 'p');
    const action = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
    signingSecret = action.signingSecret;
    actionId = action.id;
    await createAutomation(t, {
      name: 'notify',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: action.id,
    });
    env = { TRIPLINE_URL: url, TRIPLINE_API_KEY: t.adminKey };
  });

  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    await proxy?.close();
    proxy = undefined;
    await receiver.close();
    await t.close();
  });

  it('emits an event twice with one idempotency key: the second is replayed, one event, one run', async () => {
    const [emitted] = await runPython(
      `
client = tripline.Tripline()  # TRIPLINE_URL and TRIPLINE_API_KEY
args = dict(entity="default", event_type="CREATE_ARTIFACT", project="p", collection="my-model",
            artifact_type="model", version_index=3, metadata={"accuracy": 0.91})
first = client.emit_artifact_event(**args)
again = client.emit_artifact_event(**args, idempotency_key=first.idempotency_key)
other = client.emit_artifact_event(**args)
out(**{name: dict(event_id=r.event_id, replayed=r.replayed, key=r.idempotency_key,
                  runs=[[run.id, run.status, run.automation_name] for run in r.runs])
       for name, r in (("first", first), ("again", again), ("other", other))})
`,
      env,
    );
    const { first, again, other } = emitted as Line;
    expect(first.replayed).toBe(false);
    expect(first.key).toMatch(/^[0-9a-f-]{36}$/);
    expect(first.runs).toEqual([[expect.stringMatching(/^run_/), 'QUEUED', 'notify']]);
    expect(again).toEqual({ ...first, replayed: true });
    // Without a key, each call is its own logical event with a key of its own.
    expect(other.key).not.toBe(first.key);
    expect(other.event_id).not.toBe(first.event_id);
    expect(await eventCount()).toBe(2);
    const stored = await t.gql(
      'query($id: ID!) { node(id: $id) { ... on ArtifactEvent { idempotencyKey metadata triggeredRuns { totalCount } } } }',
      { id: first.event_id },
    );
    expect(stored.data.node).toEqual({
      idempotencyKey: first.key,
      metadata: { accuracy: 0.91 },
      triggeredRuns: { totalCount: 1 },
    });
  });

  it('raises typed errors: ValidationError with its field, NotFoundError, PermissionDeniedError, AuthenticationError; none retried', async () => {
    const viewer = await t.member('VIEWER');
    const lines = await runPython(
      `
sleeps = []
def attempt(case, client, **changes):
    args = dict(entity="default", event_type="CREATE_ARTIFACT", project="p", collection="my-model",
                artifact_type="model", version_index=1)
    args.update(changes)
    try:
        client.emit_artifact_event(**args)
        out(case=case, raised=None)
    except tripline.TriplineError as error:
        out(case=case, raised=type(error).__name__, message=error.message,
            field=getattr(error, "field", None), required_role=getattr(error, "required_role", None),
            code=getattr(error, "code", None), status=getattr(error, "status", None),
            request_id=getattr(error, "request_id", None),
            result_error=isinstance(error, tripline.ResultError))

client = tripline.Tripline(sleep=sleeps.append)
attempt("negative version", client, version_index=-1)
attempt("bad collection", client, collection="not a name")
attempt("unknown project", client, project="nope")
attempt("viewer", tripline.Tripline(api_key=os.environ["VIEWER_KEY"], sleep=sleeps.append))
os.environ["TRIPLINE_API_KEY"] = "tl_not_a_key"
attempt("bad key", tripline.Tripline(sleep=sleeps.append))
attempt("bad enum", client, event_type="BOGUS")
out(sleeps=sleeps)

del os.environ["TRIPLINE_API_KEY"]
try:
    tripline.Tripline()
except ValueError as error:
    out(case="no key", raised="ValueError", message=str(error))
try:
    for run in client.watch_runs(entity="default", timeout=0.3):
        out(case="watch", unexpected=run.id)
except tripline.WatchTimeoutError as error:
    out(case="watch", raised=type(error).__name__, builtin=isinstance(error, TimeoutError))
`,
      { ...env, VIEWER_KEY: viewer },
    );
    const byCase = Object.fromEntries(lines.filter((l) => l.case).map((l) => [l.case, l]));
    expect(byCase['negative version']).toMatchObject({
      raised: 'ValidationError',
      field: 'input.versionIndex',
      result_error: true,
    });
    expect(byCase['bad collection']).toMatchObject({
      raised: 'ValidationError',
      field: 'input.collection',
    });
    expect(byCase['unknown project']).toMatchObject({
      raised: 'NotFoundError',
      field: 'input.owner.project',
    });
    expect(byCase.viewer).toMatchObject({
      raised: 'PermissionDeniedError',
      required_role: 'MEMBER',
    });
    expect(byCase['bad key']).toMatchObject({
      raised: 'AuthenticationError',
      code: 'UNAUTHENTICATED',
      status: 401,
      result_error: false,
      request_id: expect.any(String),
    });
    expect(byCase['bad enum']).toMatchObject({ raised: 'RequestError', status: 400 });
    expect(byCase['bad enum'].message).toContain('BOGUS');
    expect(lines.find((l) => l.sleeps)?.sleeps).toEqual([]);
    expect(byCase['no key']?.message).toContain('TRIPLINE_API_KEY');
    expect(byCase.watch).toEqual({ case: 'watch', raised: 'WatchTimeoutError', builtin: true });
    expect(await eventCount()).toBe(0);
  });

  it('retries a lost answer, a reset, a 429 (after its Retry-After) and a timeout with one idempotency key: one event', async () => {
    proxy = await startFlakyProxy(url, ['lost', 'reset', RATE_LIMITED(2), 'hang']);
    const [result] = await runPython(
      `
sleeps = []
client = tripline.Tripline(url=os.environ["PROXY_URL"], timeout=0.5, max_attempts=6,
                           backoff_base=0.5, sleep=sleeps.append, rng=random.Random(1))
r = client.emit_artifact_event(entity="default", event_type="CREATE_ARTIFACT", project="p",
                               collection="my-model", artifact_type="model", version_index=1)
out(event_id=r.event_id, replayed=r.replayed, key=r.idempotency_key, runs=r.run_ids, sleeps=sleeps)
`,
      { ...env, PROXY_URL: proxy.url },
    );
    // The first attempt reached the server; its answer was lost, so the last is a replay of it.
    expect(result).toMatchObject({ replayed: true, runs: [expect.stringMatching(/^run_/)] });
    expect(await eventCount()).toBe(1);
    expect(proxy.bodies).toHaveLength(5);
    for (const body of proxy.bodies) {
      expect(JSON.parse(body).variables.input.idempotencyKey).toBe(result?.key);
    }
    // Full jitter below a doubling ceiling, except where Retry-After said how long.
    const sleeps = result?.sleeps as number[];
    expect(sleeps).toHaveLength(4);
    expect(sleeps[0]).toBeLessThan(0.5);
    expect(sleeps[1]).toBeLessThan(1);
    expect(sleeps[2]).toBe(2);
    expect(sleeps[3]).toBeLessThan(4);
  });

  it('gives up with TransportError after max_attempts, and does not retry a 400 or a Retry-After beyond its bound', async () => {
    proxy = await startFlakyProxy(url, [
      { status: 503 },
      { status: 502 },
      { status: 503 },
      {
        status: 400,
        headers: { 'content-type': 'application/json' },
        body: '{"errors":[{"message":"No."}]}',
      },
      RATE_LIMITED(120),
      RATE_LIMITED(1),
      RATE_LIMITED(1),
      RATE_LIMITED(1),
    ]);
    const lines = await runPython(
      `
sleeps = []
client = tripline.Tripline(url=os.environ["PROXY_URL"], max_attempts=3, sleep=sleeps.append)
for case in ("5xx", "400", "429 too long", "429 throughout"):
    before = len(sleeps)
    try:
        client.emit_artifact_event(entity="default", event_type="CREATE_ARTIFACT", project="p",
                                   collection="my-model", artifact_type="model", version_index=1)
    except tripline.TriplineError as error:
        out(case=case, raised=type(error).__name__, status=getattr(error, "status", None),
            attempts=getattr(error, "attempts", None), retry_after=getattr(error, "retry_after", None),
            sleeps=sleeps[before:])
`,
      { ...env, PROXY_URL: proxy.url },
    );
    expect(lines).toEqual([
      {
        case: '5xx',
        raised: 'TransportError',
        status: 503,
        attempts: 3,
        retry_after: null,
        sleeps: [expect.any(Number), expect.any(Number)],
      },
      {
        case: '400',
        raised: 'RequestError',
        status: 400,
        attempts: null,
        retry_after: null,
        sleeps: [],
      },
      {
        case: '429 too long',
        raised: 'RateLimitedError',
        status: 429,
        attempts: null,
        retry_after: 120,
        sleeps: [],
      },
      {
        case: '429 throughout',
        raised: 'RateLimitedError',
        status: 429,
        attempts: null,
        retry_after: 1,
        sleeps: [1, 1],
      },
    ]);
    expect(proxy.bodies).toHaveLength(8);
    expect(await eventCount()).toBe(0);
  });

  it('watches the run over SSE until SUCCEEDED while the receiver gets the delivery, then closes the stream', async () => {
    const python = startPython(
      `
client = tripline.Tripline()
r = client.emit_artifact_event(entity="default", event_type="CREATE_ARTIFACT", project="p",
                               collection="my-model", artifact_type="model", version_index=2)
out(emitted=r.event_id, runs=r.run_ids)
for run in client.watch_runs(event_id=r.event_id, timeout=30):
    out(run=run.id, status=run.status, event=run.event_id, result=run.result, final=run.final)
out(ended=True)
sys.stdin.readline()  # the test looks at the server while this process still runs
after = list(client.watch_runs(event_id=r.event_id, timeout=10))
out(after=[[run.id, run.status] for run in after])
`,
      env,
    );
    const { emitted, runs } = await python.line((l) => 'emitted' in l);
    await hubSize(1);
    // The current state is read once the stream is open, so nothing before it is missed.
    await python.line((l) => l.status === 'QUEUED');
    expect(receiver.requests).toHaveLength(0);
    await t.app.engine.drain();
    await python.line((l) => 'ended' in l);
    expect(python.lines.filter((l) => 'run' in l)).toEqual(
      ['QUEUED', 'RUNNING', 'SUCCEEDED'].map((status) => ({
        run: runs[0],
        status,
        event: emitted,
        result: status === 'SUCCEEDED' ? expect.stringContaining('200') : null,
        final: status === 'SUCCEEDED',
      })),
    );
    const [delivery] = await receiver.waitForRequests(1);
    expect(delivery?.headers['webhook-id']).toBe(runs[0]);
    // The loop ended by itself once the run was final, and closed its stream.
    await hubSize(0);
    expect(python.child.exitCode).toBeNull();

    // A watch opened after the run finished yields its final state at once and ends.
    python.child.stdin?.end('\n');
    expect(await python.line((l) => 'after' in l)).toEqual({ after: [[runs[0], 'SUCCEEDED']] });
    expect((await python.exited).code).toBe(0);
  });

  it("verifies the delivery's signature with the action's secret and rejects a tampered one", async () => {
    const runId = (await emit(t)).triggeredRuns[0].id as string;
    await t.app.engine.drain();
    const [delivery] = await receiver.waitForRequests(1);
    const timestamp = Number(delivery?.headers['webhook-timestamp']);
    const vector = { id: 'msg_1', timestamp: 1767225600, body: '{"caf\u00e9":"\u2713"}' };
    const lines = await runPython(
      `
given = json.loads(sys.stdin.read())
secret, headers, ts = given["secret"], given["headers"], given["timestamp"]
body = __import__("base64").b64decode(given["body"])

def check(case, **kwargs):
    args = dict(secret=secret, headers=headers, body=body, now=ts)
    args.update(kwargs)
    try:
        out(case=case, ok=tripline.verify_signature(**args))
    except tripline.InvalidSignatureError as error:
        out(case=case, rejected=error.message)

check("as received")
check("system clock", now=None)
check("text body, other header case", body=body.decode(),
      headers={name.title(): value for name, value in headers.items()})
check("tampered body", body=body.replace(b"my-model", b"my-modem"))
check("one byte more", body=body + b" ")
check("other secret", secret="whsec_" + __import__("base64").b64encode(b"k" * 32).decode())
check("too old", now=ts + 301)
check("within tolerance", now=ts + 299)
check("wider tolerance", now=ts + 301, tolerance=400)
check("from the future", now=ts - 301)
check("rotated: several signatures", headers=dict(headers, **{
    "webhook-signature": "v1,bm90IGl0 v2,xyz " + headers["webhook-signature"]}))
check("only wrong signatures", headers=dict(headers, **{"webhook-signature": "v1,bm90IGl0 v1,"}))
check("no signature header", headers={k: v for k, v in headers.items() if k != "webhook-signature"})
v = given["vector"]
check("vector", headers={"webhook-id": v["id"], "webhook-timestamp": str(v["timestamp"]),
      "webhook-signature": v["signature"]}, body=v["body"], now=v["timestamp"])
`,
      env,
      JSON.stringify({
        secret: signingSecret,
        headers: delivery?.headers,
        body: delivery?.body.toString('base64'),
        timestamp,
        vector: {
          ...vector,
          signature: signPayload(signingSecret, vector.id, vector.timestamp, vector.body),
        },
      }),
    );
    const byCase = Object.fromEntries(lines.map((l) => [l.case, l]));
    for (const accepted of [
      'as received',
      'system clock',
      'text body, other header case',
      'within tolerance',
      'wider tolerance',
      'rotated: several signatures',
    ]) {
      expect(byCase[accepted], accepted).toEqual({ case: accepted, ok: runId });
    }
    expect(byCase.vector).toEqual({ case: 'vector', ok: 'msg_1' });
    for (const refused of [
      'tampered body',
      'one byte more',
      'other secret',
      'only wrong signatures',
    ]) {
      expect(byCase[refused]?.rejected, refused).toMatch(/No signature .* matches/);
    }
    expect(byCase['too old']?.rejected).toMatch(/seconds from now/);
    expect(byCase['from the future']?.rejected).toMatch(/seconds from now/);
    expect(byCase['no signature header']?.rejected).toMatch(/webhook-signature header is missing/);
  });

  it('reports a run and logs 2,500 shuffled points in three calls, one retried after a lost answer: one firing, one delivery', async () => {
    const created = await mutate(
      t,
      `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename
        ... on CreateAutomationPayload { automation { id } } ... on Error { message } } }`,
      {
        i: {
          entity: 'default',
          name: 'loss-low',
          eventType: 'RUN_METRIC',
          scope: { project: 'p' },
          runCondition: { metric: { metric: 'loss', comparison: 'LT', threshold: 0.5 } },
          action: { actionId },
        },
      },
    );
    expect(created.__typename, created.message).toBe('CreateAutomationPayload');
    // Requests in order: the state report, metrics call 1, call 2 (its answer lost), call 2
    // again, call 3; then the whole report again (three replays).
    proxy = await startFlakyProxy(url, ['forward', 'forward', 'lost']);
    const [result] = await runPython(
      `
sleeps = []
client = tripline.Tripline(url=os.environ["PROXY_URL"], sleep=sleeps.append, rng=random.Random(1))
started = client.report_run_state(entity="default", project="p", run="resnet-1", state="RUNNING",
                                  idempotency_key="job-7-start")
# loss falls below 0.5 from step 501 on: in the second call once sorted by step.
points = [(step, "loss", 1 - step / 1000) for step in range(1250)]
points += [dict(step=step, name="acc", value=step / 1250) for step in range(1250)]
random.Random(7).shuffle(points)
args = dict(entity="default", project="p", run="resnet-1", points=points, idempotency_key="job-7-metrics")
logged = client.log_run_metrics(**args)
again = client.log_run_metrics(**args)

def report(r):
    return dict(run=r.run.id, name=r.run.name, state=r.run.state, replayed=r.replayed,
                accepted=r.accepted_points, key=r.idempotency_key, keys=list(r.idempotency_keys),
                triggered=[[run.id, run.status, run.automation_name] for run in r.triggered_runs],
                metrics={name: [m.latest_step, m.latest_value, m.point_count]
                         for name, m in r.run.metrics.items()})
out(started=report(started), logged=report(logged), again=report(again), sleeps=sleeps)
`,
      { ...env, PROXY_URL: proxy.url },
    );
    const { started, logged, again, sleeps } = result as Line;
    expect(started).toMatchObject({
      run: expect.stringMatching(/^trun_/),
      name: 'resnet-1',
      state: 'RUNNING',
      replayed: false,
      accepted: 0,
      keys: ['job-7-start'],
      triggered: [],
      metrics: {},
    });
    const keys = ['job-7-metrics#1', 'job-7-metrics#2', 'job-7-metrics#3'];
    expect(logged).toEqual({
      run: started.run,
      name: 'resnet-1',
      state: 'RUNNING',
      replayed: false,
      // Every point was accepted: sorted before splitting, no call holds a step behind another's.
      accepted: 2500,
      key: 'job-7-metrics',
      keys,
      triggered: [[expect.stringMatching(/^run_/), 'QUEUED', 'loss-low']],
      metrics: { loss: [1249, 1 - 1249 / 1000, 1250], acc: [1249, 1249 / 1250, 1250] },
    });
    expect(again).toEqual({ ...logged, replayed: true });
    expect(sleeps).toHaveLength(1);

    const calls = proxy.bodies.map((body) => JSON.parse(body).variables.input);
    const metricCalls = calls.filter((input) => 'points' in input);
    expect(metricCalls.map((input) => [input.idempotencyKey, input.points.length])).toEqual([
      [keys[0], 1000],
      [keys[1], 1000],
      [keys[1], 1000],
      [keys[2], 500],
      [keys[0], 1000],
      [keys[1], 1000],
      [keys[2], 500],
    ]);
    const steps = metricCalls
      .slice(0, 4)
      .filter((_, i) => i !== 2)
      .flatMap((input) => input.points.map((point: { step: number }) => point.step));
    expect(steps).toEqual([...steps].sort((a, b) => a - b));

    // The retried call fired the automation once; the cooldown kept the third call from firing.
    await t.app.engine.drain();
    const [delivery] = await receiver.waitForRequests(1);
    expect(receiver.requests).toHaveLength(1);
    expect(delivery?.headers['webhook-id']).toBe(logged.triggered[0][0]);
    expect(JSON.parse(delivery?.body.toString() ?? '{}')).toMatchObject({
      event_type: 'RUN_METRIC',
      automation_name: 'loss-low',
      run_name: 'resnet-1',
      metric_name: 'loss',
      metric_values: [1 - 501 / 1000],
    });
    const runs = await t.gql(
      `{ entity(name: "default") { triggeredRuns { totalCount }
        projects(first: 1) { edges { node { runs(first: 5) { edges { node {
          name state metrics { name latestStep latestValue pointCount } } } } } } } } }`,
    );
    expect(runs.data.entity.triggeredRuns.totalCount).toBe(1);
    const [run] = runs.data.entity.projects.edges[0].node.runs.edges;
    expect(run.node.metrics).toContainEqual({
      name: 'loss',
      latestStep: 1249,
      latestValue: 1 - 1249 / 1000,
      pointCount: 1250,
    });
  });

  it('refuses NaN, infinities and malformed points before sending anything; raises the typed errors of run reports', async () => {
    const viewer = await t.member('VIEWER');
    proxy = await startFlakyProxy(url, []);
    const lines = await runPython(
      `
sleeps = []
client = tripline.Tripline(url=os.environ["PROXY_URL"], sleep=sleeps.append)
def attempt(case, call, **changes):
    args = dict(entity="default", project="p", run="never-reported")
    args.update(changes)
    try:
        call(**args)
        out(case=case, raised=None)
    except (ValueError, tripline.TriplineError) as error:
        out(case=case, raised=type(error).__name__, message=str(error),
            field=getattr(error, "field", None), required_role=getattr(error, "required_role", None),
            status=getattr(error, "status", None))

log = client.log_run_metrics
attempt("nan", log, points=[(0, "loss", 0.5), (1, "loss", float("nan"))])
attempt("inf", log, points=[{"step": 0, "name": "loss", "value": float("-inf")}])
attempt("too big for a float", log, points=[(0, "loss", 10 ** 400)])
attempt("negative step", log, points=[(-1, "loss", 0.5)])
attempt("no value", log, points=[{"step": 0, "name": "loss"}])
attempt("two fields", log, points=[(0, "loss")])
attempt("unknown run", log, points=[(0, "loss", 0.5)])
attempt("no points", log, points=[])
attempt("bad run name", client.report_run_state, run=" spaced ", state="RUNNING")
attempt("bad state", client.report_run_state, run="r", state="EXPLODED")
attempt("viewer", tripline.Tripline(url=os.environ["PROXY_URL"], api_key=os.environ["VIEWER_KEY"]).report_run_state,
        run="r", state="RUNNING")
out(sleeps=sleeps)
`,
      { ...env, PROXY_URL: proxy.url, VIEWER_KEY: viewer },
    );
    const byCase = Object.fromEntries(lines.filter((l) => l.case).map((l) => [l.case, l]));
    expect(byCase.nan).toMatchObject({ raised: 'ValueError' });
    expect(byCase.nan?.message).toMatch(/^points\[1\]\.value is nan: metric values must be finite/);
    expect(byCase.inf?.message).toMatch(/^points\[0\]\.value is -inf: .*nothing was sent/);
    expect(byCase['too big for a float']?.message).toMatch(/^points\[0\]\.value .* must be finite/);
    expect(byCase['negative step']?.message).toMatch(/^points\[0\]\.step is -1: .*0 or more/);
    expect(byCase['no value']?.message).toMatch(/^points\[0\] has no value/);
    expect(byCase['two fields']?.message).toMatch(/^points\[0\] is .*\(step, name, value\)/);
    // Only the cases after the client-side refusals reached the server.
    expect(proxy.bodies).toHaveLength(5);
    expect(byCase['unknown run']).toMatchObject({ raised: 'NotFoundError', field: 'input.run' });
    expect(byCase['no points']).toMatchObject({ raised: 'ValidationError', field: 'input.points' });
    expect(byCase['bad run name']).toMatchObject({ raised: 'ValidationError', field: 'input.run' });
    expect(byCase['bad state']).toMatchObject({ raised: 'RequestError', status: 400 });
    expect(byCase.viewer).toMatchObject({
      raised: 'PermissionDeniedError',
      required_role: 'MEMBER',
    });
    expect(lines.find((l) => l.sleeps)?.sleeps).toEqual([]);
  });

  it('runs emit_example.py: stores the event, follows its run to SUCCEEDED, and replays with the same key', async () => {
    t.app.start();
    const args = [
      '--project',
      'p',
      '--collection',
      'my-model',
      '--type',
      'model',
      '--version',
      '4',
    ];
    const example = (more: string[]) =>
      startPython({ file: 'emit_example.py', args: [...args, ...more] }, env).exited;

    const first = await example([
      '--key',
      'build-42-my-model-v4',
      '--metadata',
      '{"accuracy": 0.9}',
      '--watch',
      '--timeout',
      '30',
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^event evt_\S+ \(stored\), key build-42-my-model-v4$/m);
    expect(first.stdout).toMatch(/^run run_\S+ notify: SUCCEEDED \(.*200.*\)$/m);
    expect(receiver.requests).toHaveLength(1);

    const again = await example(['--key', 'build-42-my-model-v4']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/\(replayed\)/);
    expect(await eventCount()).toBe(1);

    const refused = await example(['--key', 'k', '--project', 'nope']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^refused: .*\(input\.owner\.project\)$/m);
  });
});
