CREATE TABLE `run_automation_firings` (
	`automation_id` text NOT NULL,
	`training_run_id` text NOT NULL,
	`fired_at` integer NOT NULL,
	PRIMARY KEY(`training_run_id`, `automation_id`),
	FOREIGN KEY (`automation_id`) REFERENCES `automations`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`training_run_id`) REFERENCES `training_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `run_events` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`project_id` text NOT NULL,
	`training_run_id` text NOT NULL,
	`report_id` text NOT NULL,
	`event_type` text NOT NULL,
	`run_state` text NOT NULL,
	`metric_name` text,
	`metric_values` text,
	`condition` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`project_id`) REFERENCES `projects`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`training_run_id`) REFERENCES `training_runs`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`report_id`) REFERENCES `run_reports`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `run_events_report_idx` ON `run_events` (`report_id`);--> statement-breakpoint
CREATE TABLE `run_metric_windows` (
	`training_run_id` text NOT NULL,
	`project_id` text NOT NULL,
	`name` text NOT NULL,
	`last_step` integer NOT NULL,
	`count` integer NOT NULL,
	`recent` text NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`training_run_id`, `name`),
	FOREIGN KEY (`training_run_id`) REFERENCES `training_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `run_metric_windows_peers_idx` ON `run_metric_windows` (`project_id`,`name`,`updated_at`);--> statement-breakpoint
CREATE TABLE `run_reports` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`training_run_id` text NOT NULL,
	`kind` text NOT NULL,
	`accepted_points` integer NOT NULL,
	`idempotency_key` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`training_run_id`) REFERENCES `training_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `run_reports_idempotency_idx` ON `run_reports` (`entity_id`,`idempotency_key`);--> statement-breakpoint
CREATE TABLE `training_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`project_id` text NOT NULL,
	`name` text NOT NULL,
	`state` text NOT NULL,
	`reported_by_id` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`project_id`) REFERENCES `projects`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`reported_by_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE UNIQUE INDEX `training_runs_project_name_idx` ON `training_runs` (`project_id`,`name`);--> statement-breakpoint
CREATE INDEX `training_runs_project_created_idx` ON `training_runs` (`project_id`,`created_at`,`id`);--> statement-breakpoint
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_triggered_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`event_id` text,
	`run_event_id` text,
	`training_run_id` text,
	`automation_id` text,
	`automation_name` text NOT NULL,
	`action_id` text,
	`project_id` text,
	`registry_id` text,
	`status` text NOT NULL,
	`attempt_count` integer DEFAULT 0 NOT NULL,
	`next_attempt_at` integer,
	`lease_owner` text,
	`lease_expires_at` integer,
	`due_at` integer GENERATED ALWAYS AS (CASE WHEN "status" IN ('QUEUED', 'RETRYING') THEN coalesce("next_attempt_at", 0) WHEN "status" = 'RUNNING' THEN coalesce("lease_expires_at", 0) END) VIRTUAL,
	`result` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer,
	`finished_at` integer,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`event_id`) REFERENCES `artifact_events`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`run_event_id`) REFERENCES `run_events`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`automation_id`) REFERENCES `automations`(`id`) ON UPDATE no action ON DELETE set null,
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
-- Edited after drizzle-kit generate: its copy listed due_at (a generated column, which SQLite refuses to insert) and the two new columns (absent from the old table). Foreign keys are off while migrations run (applyMigrations), so the DROP below cascades nothing.
INSERT INTO `__new_triggered_runs`("id", "entity_id", "event_id", "automation_id", "automation_name", "action_id", "project_id", "registry_id", "status", "attempt_count", "next_attempt_at", "lease_owner", "lease_expires_at", "result", "created_at", "updated_at", "finished_at") SELECT "id", "entity_id", "event_id", "automation_id", "automation_name", "action_id", "project_id", "registry_id", "status", "attempt_count", "next_attempt_at", "lease_owner", "lease_expires_at", "result", "created_at", "updated_at", "finished_at" FROM `triggered_runs`;--> statement-breakpoint
DROP TABLE `triggered_runs`;--> statement-breakpoint
ALTER TABLE `__new_triggered_runs` RENAME TO `triggered_runs`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `triggered_runs_due_idx` ON `triggered_runs` (`due_at`) WHERE "triggered_runs"."due_at" IS NOT NULL;--> statement-breakpoint
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
CREATE INDEX `triggered_runs_training_run_created_idx` ON `triggered_runs` (`training_run_id`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_training_run_status_created_idx` ON `triggered_runs` (`training_run_id`,`status`,`created_at`,`id`);--> statement-breakpoint
ALTER TABLE `automations` ADD `filter_run_name_pattern` text;--> statement-breakpoint
ALTER TABLE `automations` ADD `filter_run_reported_by_id` text;--> statement-breakpoint
ALTER TABLE `automations` ADD `run_condition` text;--> statement-breakpoint
ALTER TABLE `automations` ADD `cooldown_seconds` integer;