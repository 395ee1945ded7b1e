DROP INDEX `triggered_runs_lease_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_entity_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_automation_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_event_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_project_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_registry_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_due_idx`;--> statement-breakpoint
ALTER TABLE `triggered_runs` ADD `due_at` integer GENERATED ALWAYS AS (CASE WHEN "status" IN ('QUEUED', 'RETRYING') THEN coalesce("next_attempt_at", 0) WHEN "status" = 'RUNNING' THEN coalesce("lease_expires_at", 0) END) VIRTUAL;--> statement-breakpoint
CREATE INDEX `triggered_runs_entity_created_idx` ON `triggered_runs` (`entity_id`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_entity_status_created_idx` ON `triggered_runs` (`entity_id`,`status`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_project_created_idx` ON `triggered_runs` (`project_id`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_project_status_created_idx` ON `triggered_runs` (`project_id`,`status`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_registry_created_idx` ON `triggered_runs` (`registry_id`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_registry_status_created_idx` ON `triggered_runs` (`registry_id`,`status`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_automation_created_idx` ON `triggered_runs` (`automation_id`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_automation_status_created_idx` ON `triggered_runs` (`automation_id`,`status`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_event_created_idx` ON `triggered_runs` (`event_id`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_event_status_created_idx` ON `triggered_runs` (`event_id`,`status`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_due_idx` ON `triggered_runs` (`due_at`,`action_id`) WHERE "triggered_runs"."due_at" IS NOT NULL;