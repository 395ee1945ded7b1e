DROP INDEX "triggered_runs_entity_created_idx";--> statement-breakpoint
DROP INDEX "triggered_runs_project_created_idx";--> statement-breakpoint
DROP INDEX "triggered_runs_registry_created_idx";--> statement-breakpoint
DROP INDEX "triggered_runs_automation_created_idx";--> statement-breakpoint
DROP INDEX "triggered_runs_event_created_idx";--> statement-breakpoint
DROP INDEX "triggered_runs_training_run_created_idx";