"""Report an artifact event to Tripline and, with --watch, follow the runs it triggered.

    export TRIPLINE_URL=http://127.0.0.1:4000/graphql TRIPLINE_API_KEY=tl_...
    python3 emit_example.py --project vision --collection resnet --type model --version 3 \\
        --metadata '{"accuracy": 0.91}' --key "ci-$BUILD_ID-resnet-v3" --watch

Exit status: 0 when the event was stored (and, with --watch, every run SUCCEEDED), 1 when a run
FAILED or was SKIPPED, 2 when the server refused the event, 3 when it could not be reached or the
watch timed out.
"""

from __future__ import annotations

import argparse
import json
import sys

from tripline import (
    AuthenticationError,
    PermissionDeniedError,
    RequestError,
    ResultError,
    TransportError,
    Tripline,
    WatchTimeoutError,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entity", default="default")
    parser.add_argument(
        "--event-type",
        default="CREATE_ARTIFACT",
        choices=["CREATE_ARTIFACT", "LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS"],
    )
    parser.add_argument("--project", help="project name (CREATE_ARTIFACT, ADD_ARTIFACT_ALIAS)")
    parser.add_argument("--registry", help="registry name (LINK_ARTIFACT, ADD_ARTIFACT_ALIAS)")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--type", dest="artifact_type", required=True, help="artifact type, e.g. model")
    parser.add_argument("--version", dest="version_index", type=int, required=True, help="3 for v3")
    parser.add_argument("--alias", help="the alias added (ADD_ARTIFACT_ALIAS)")
    parser.add_argument("--metadata", type=json.loads, help="a JSON object")
    parser.add_argument("--key", help="idempotency key; derive it from the build so reruns are safe")
    parser.add_argument("--watch", action="store_true", help="follow the triggered runs until final")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to watch at most")
    args = parser.parse_args(argv)

    client = Tripline()  # TRIPLINE_URL, TRIPLINE_API_KEY
    try:
        result = client.emit_artifact_event(
            entity=args.entity,
            event_type=args.event_type,
            project=args.project,
            registry=args.registry,
            collection=args.collection,
            artifact_type=args.artifact_type,
            version_index=args.version_index,
            alias=args.alias,
            metadata=args.metadata,
            idempotency_key=args.key,
        )
    except PermissionDeniedError as error:
        print(f"refused: {error.message} (needs the {error.required_role} role)", file=sys.stderr)
        return 2
    except ResultError as error:
        # ValidationError, NotFoundError and ConflictError name the input at fault.
        print(f"refused: {error.message} ({error.data.get('field')})", file=sys.stderr)
        return 2
    except AuthenticationError as error:
        print(f"refused: {error.message} Check TRIPLINE_API_KEY.", file=sys.stderr)
        return 2
    except RequestError as error:
        print(f"refused: {error.message} (request id {error.request_id})", file=sys.stderr)
        return 2
    except TransportError as error:
        print(f"unreachable: {error.message}", file=sys.stderr)
        return 3

    print(f"event {result.event_id} ({'replayed' if result.replayed else 'stored'}), key {result.idempotency_key}")
    for run in result.runs:
        print(f"run {run.id} {run.automation_name}: {run.status}")
    if not args.watch:
        return 0

    final = {}
    try:
        for run in client.watch_runs(event_id=result.event_id, timeout=args.timeout):
            print(f"run {run.id} {run.automation_name}: {run.status}" + (f" ({run.result})" if run.result else ""))
            if run.final:
                final[run.id] = run.status
    except WatchTimeoutError:
        print(f"gave up waiting after {args.timeout:g} s", file=sys.stderr)
        return 3
    except TransportError as error:
        print(f"lost the run stream: {error.message}", file=sys.stderr)
        return 3
    return 0 if all(status == "SUCCEEDED" for status in final.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
