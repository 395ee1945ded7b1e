DROP INDEX `triggered_runs_due_idx`;--> statement-breakpoint
CREATE INDEX `triggered_runs_due_idx` ON `triggered_runs` (`due_at`) WHERE "triggered_runs"."due_at" IS NOT NULL;