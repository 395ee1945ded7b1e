DROP INDEX `triggered_runs_project_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_project_status_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_registry_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_registry_status_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_automation_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_automation_status_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_event_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_event_status_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_training_run_created_idx`;--> statement-breakpoint
DROP INDEX `triggered_runs_training_run_status_created_idx`;--> statement-breakpoint
CREATE INDEX `triggered_runs_project_created_idx` ON `triggered_runs` (`project_id`,`created_at`,`id`) WHERE "triggered_runs"."project_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_project_status_created_idx` ON `triggered_runs` (`project_id`,`status`,`created_at`,`id`) WHERE "triggered_runs"."project_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_registry_created_idx` ON `triggered_runs` (`registry_id`,`created_at`,`id`) WHERE "triggered_runs"."registry_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_registry_status_created_idx` ON `triggered_runs` (`registry_id`,`status`,`created_at`,`id`) WHERE "triggered_runs"."registry_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_automation_created_idx` ON `triggered_runs` (`automation_id`,`created_at`,`id`) WHERE "triggered_runs"."automation_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_automation_status_created_idx` ON `triggered_runs` (`automation_id`,`status`,`created_at`,`id`) WHERE "triggered_runs"."automation_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_event_created_idx` ON `triggered_runs` (`event_id`,`created_at`,`id`) WHERE "triggered_runs"."event_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_event_status_created_idx` ON `triggered_runs` (`event_id`,`status`,`created_at`,`id`) WHERE "triggered_runs"."event_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_training_run_created_idx` ON `triggered_runs` (`training_run_id`,`created_at`,`id`) WHERE "triggered_runs"."training_run_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `triggered_runs_training_run_status_created_idx` ON `triggered_runs` (`training_run_id`,`status`,`created_at`,`id`) WHERE "triggered_runs"."training_run_id" IS NOT NULL;