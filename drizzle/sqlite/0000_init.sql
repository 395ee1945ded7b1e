CREATE TABLE `actions` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`kind` text NOT NULL,
	`name` text NOT NULL,
	`enabled` integer DEFAULT true NOT NULL,
	`url` text,
	`access_token_secret_id` text,
	`signing_secret_id` text,
	`headers` text,
	`channel` text,
	`slack_url_secret_id` text,
	`disabled_reason` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`created_by_id` text,
	`updated_at` integer,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`access_token_secret_id`) REFERENCES `secrets`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`signing_secret_id`) REFERENCES `secrets`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`slack_url_secret_id`) REFERENCES `secrets`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`created_by_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE UNIQUE INDEX `actions_entity_name_idx` ON `actions` (`entity_id`,`name`);--> statement-breakpoint
CREATE INDEX `actions_access_token_secret_idx` ON `actions` (`access_token_secret_id`);--> statement-breakpoint
CREATE INDEX `actions_signing_secret_idx` ON `actions` (`signing_secret_id`);--> statement-breakpoint
CREATE INDEX `actions_slack_url_secret_idx` ON `actions` (`slack_url_secret_id`);--> statement-breakpoint
CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`name` text NOT NULL,
	`prefix` text NOT NULL,
	`hash` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`last_used_at` integer,
	`revoked_at` integer,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_hash_idx` ON `api_keys` (`hash`);--> statement-breakpoint
CREATE INDEX `api_keys_user_idx` ON `api_keys` (`user_id`);--> statement-breakpoint
CREATE TABLE `artifact_collections` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`project_id` text,
	`registry_id` text,
	`name` text NOT NULL,
	`artifact_type` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`project_id`) REFERENCES `projects`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`registry_id`) REFERENCES `registries`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `collections_project_name_idx` ON `artifact_collections` (`project_id`,`name`);--> statement-breakpoint
CREATE UNIQUE INDEX `collections_registry_name_idx` ON `artifact_collections` (`registry_id`,`name`);--> statement-breakpoint
CREATE INDEX `collections_entity_idx` ON `artifact_collections` (`entity_id`);--> statement-breakpoint
CREATE TABLE `artifact_events` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`event_type` text NOT NULL,
	`project_id` text,
	`registry_id` text,
	`collection_id` text,
	`collection_name` text NOT NULL,
	`artifact_type` text NOT NULL,
	`version_index` integer NOT NULL,
	`alias` text,
	`author` text NOT NULL,
	`metadata` text,
	`idempotency_key` text,
	`created_by_id` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`project_id`) REFERENCES `projects`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`registry_id`) REFERENCES `registries`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`collection_id`) REFERENCES `artifact_collections`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`created_by_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE UNIQUE INDEX `artifact_events_idempotency_idx` ON `artifact_events` (`entity_id`,`idempotency_key`);--> statement-breakpoint
CREATE INDEX `artifact_events_entity_created_idx` ON `artifact_events` (`entity_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `artifact_events_project_idx` ON `artifact_events` (`project_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `artifact_events_registry_idx` ON `artifact_events` (`registry_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `audit_log` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text,
	`actor_id` text,
	`action` text NOT NULL,
	`target_type` text NOT NULL,
	`target_id` text,
	`details` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`actor_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE INDEX `audit_log_entity_idx` ON `audit_log` (`entity_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `automation_secret_refs` (
	`automation_id` text NOT NULL,
	`secret_id` text NOT NULL,
	PRIMARY KEY(`automation_id`, `secret_id`),
	FOREIGN KEY (`automation_id`) REFERENCES `automations`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`secret_id`) REFERENCES `secrets`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `automation_secret_refs_secret_idx` ON `automation_secret_refs` (`secret_id`);--> statement-breakpoint
CREATE TABLE `automations` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`name` text NOT NULL,
	`description` text,
	`enabled` integer DEFAULT true NOT NULL,
	`event_type` text NOT NULL,
	`scope_type` text NOT NULL,
	`scope_id` text NOT NULL,
	`filter_collection_name` text,
	`filter_artifact_type` text,
	`filter_alias_pattern` text,
	`action_id` text NOT NULL,
	`payload_template` text,
	`slack_title` text,
	`slack_message` text,
	`slack_severity` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`created_by_id` text,
	`updated_at` integer,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`created_by_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE UNIQUE INDEX `automations_entity_name_idx` ON `automations` (`entity_id`,`name`);--> statement-breakpoint
CREATE INDEX `automations_match_idx` ON `automations` (`scope_id`,`event_type`,`enabled`);--> statement-breakpoint
CREATE INDEX `automations_action_idx` ON `automations` (`action_id`);--> statement-breakpoint
CREATE TABLE `delivery_attempts` (
	`id` text PRIMARY KEY NOT NULL,
	`run_id` text NOT NULL,
	`attempt_number` integer NOT NULL,
	`started_at` integer NOT NULL,
	`duration_ms` integer NOT NULL,
	`status_code` integer,
	`error_class` text,
	`error_message` text,
	`response_body` text,
	FOREIGN KEY (`run_id`) REFERENCES `triggered_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `delivery_attempts_run_idx` ON `delivery_attempts` (`run_id`,`attempt_number`);--> statement-breakpoint
CREATE TABLE `entities` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `entities_name_idx` ON `entities` (`name`);--> statement-breakpoint
CREATE TABLE `memberships` (
	`entity_id` text NOT NULL,
	`user_id` text NOT NULL,
	`role` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	PRIMARY KEY(`entity_id`, `user_id`),
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `memberships_user_idx` ON `memberships` (`user_id`);--> statement-breakpoint
CREATE TABLE `projects` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`name` text NOT NULL,
	`description` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `projects_entity_name_idx` ON `projects` (`entity_id`,`name`);--> statement-breakpoint
CREATE TABLE `registries` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`name` text NOT NULL,
	`description` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `registries_entity_name_idx` ON `registries` (`entity_id`,`name`);--> statement-breakpoint
CREATE TABLE `secrets` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`name` text NOT NULL,
	`ciphertext` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`created_by_id` text,
	`rotated_at` integer,
	`rotated_by_id` text,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`created_by_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null,
	FOREIGN KEY (`rotated_by_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE UNIQUE INDEX `secrets_entity_name_idx` ON `secrets` (`entity_id`,`name`);--> statement-breakpoint
CREATE TABLE `triggered_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`entity_id` text NOT NULL,
	`event_id` text NOT NULL,
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
	`result` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer,
	`finished_at` integer,
	FOREIGN KEY (`entity_id`) REFERENCES `entities`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`event_id`) REFERENCES `artifact_events`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`automation_id`) REFERENCES `automations`(`id`) ON UPDATE no action ON DELETE set null,
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE INDEX `triggered_runs_due_idx` ON `triggered_runs` (`status`,`next_attempt_at`);--> statement-breakpoint
CREATE INDEX `triggered_runs_lease_idx` ON `triggered_runs` (`status`,`lease_expires_at`);--> statement-breakpoint
CREATE INDEX `triggered_runs_entity_idx` ON `triggered_runs` (`entity_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `triggered_runs_automation_idx` ON `triggered_runs` (`automation_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `triggered_runs_event_idx` ON `triggered_runs` (`event_id`);--> statement-breakpoint
CREATE INDEX `triggered_runs_project_idx` ON `triggered_runs` (`project_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `triggered_runs_registry_idx` ON `triggered_runs` (`registry_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `users` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`kind` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL
);
