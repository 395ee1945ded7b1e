CREATE TABLE "actions" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"url" text,
	"access_token_secret_id" text,
	"signing_secret_id" text,
	"headers" json,
	"channel" text,
	"slack_url_secret_id" text,
	"disabled_reason" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	"created_by_id" text,
	"updated_at" bigint
);
--> statement-breakpoint
CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"name" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	"last_used_at" bigint,
	"revoked_at" bigint
);
--> statement-breakpoint
CREATE TABLE "artifact_collections" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"project_id" text,
	"registry_id" text,
	"name" text NOT NULL,
	"artifact_type" text NOT NULL,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "artifact_events" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"event_type" text NOT NULL,
	"project_id" text,
	"registry_id" text,
	"collection_id" text,
	"collection_name" text NOT NULL,
	"artifact_type" text NOT NULL,
	"version_index" integer NOT NULL,
	"alias" text,
	"tag" text,
	"author" text NOT NULL,
	"metadata" json,
	"idempotency_key" text,
	"created_by_id" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "audit_log_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"entity_id" text,
	"actor_id" text,
	"action" text NOT NULL,
	"target_type" text NOT NULL,
	"target_id" text,
	"details" json,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "automation_secret_refs" (
	"automation_id" text NOT NULL,
	"secret_id" text NOT NULL,
	CONSTRAINT "automation_secret_refs_automation_id_secret_id_pk" PRIMARY KEY("automation_id","secret_id")
);
--> statement-breakpoint
CREATE TABLE "automations" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"enabled" boolean DEFAULT true NOT NULL,
	"event_type" text NOT NULL,
	"scope_type" text NOT NULL,
	"scope_id" text NOT NULL,
	"filter_collection_name" text,
	"filter_artifact_type" text,
	"filter_alias_pattern" text,
	"filter_tag_pattern" text,
	"action_id" text NOT NULL,
	"payload_template" text,
	"slack_title" text,
	"slack_message" text,
	"slack_severity" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	"created_by_id" text,
	"updated_at" bigint
);
--> statement-breakpoint
CREATE TABLE "delivery_attempts" (
	"id" text PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"attempt_number" integer NOT NULL,
	"started_at" bigint NOT NULL,
	"duration_ms" integer,
	"status_code" integer,
	"error_class" text,
	"error_message" text,
	"response_body" text
);
--> statement-breakpoint
CREATE TABLE "entities" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "memberships" (
	"entity_id" text NOT NULL,
	"user_id" text NOT NULL,
	"role" text NOT NULL,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	CONSTRAINT "memberships_entity_id_user_id_pk" PRIMARY KEY("entity_id","user_id")
);
--> statement-breakpoint
CREATE TABLE "projects" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "registries" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "secrets" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"name" text NOT NULL,
	"ciphertext" text NOT NULL,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	"created_by_id" text,
	"rotated_at" bigint,
	"rotated_by_id" text
);
--> statement-breakpoint
CREATE TABLE "triggered_runs" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "triggered_runs_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"entity_id" text NOT NULL,
	"event_id" text NOT NULL,
	"automation_id" text,
	"automation_name" text NOT NULL,
	"action_id" text,
	"project_id" text,
	"registry_id" text,
	"status" text NOT NULL,
	"attempt_count" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" bigint,
	"lease_owner" text,
	"lease_expires_at" bigint,
	"due_at" bigint GENERATED ALWAYS AS (CASE WHEN "status" IN ('QUEUED', 'RETRYING') THEN coalesce("next_attempt_at", 0) WHEN "status" = 'RUNNING' THEN coalesce("lease_expires_at", 0) END) STORED,
	"result" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	"updated_at" bigint,
	"finished_at" bigint
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"kind" text NOT NULL,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
ALTER TABLE "actions" ADD CONSTRAINT "actions_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "actions" ADD CONSTRAINT "actions_access_token_secret_id_secrets_id_fk" FOREIGN KEY ("access_token_secret_id") REFERENCES "public"."secrets"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "actions" ADD CONSTRAINT "actions_signing_secret_id_secrets_id_fk" FOREIGN KEY ("signing_secret_id") REFERENCES "public"."secrets"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "actions" ADD CONSTRAINT "actions_slack_url_secret_id_secrets_id_fk" FOREIGN KEY ("slack_url_secret_id") REFERENCES "public"."secrets"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "actions" ADD CONSTRAINT "actions_created_by_id_users_id_fk" FOREIGN KEY ("created_by_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_collections" ADD CONSTRAINT "artifact_collections_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_collections" ADD CONSTRAINT "artifact_collections_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_collections" ADD CONSTRAINT "artifact_collections_registry_id_registries_id_fk" FOREIGN KEY ("registry_id") REFERENCES "public"."registries"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_events" ADD CONSTRAINT "artifact_events_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_events" ADD CONSTRAINT "artifact_events_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_events" ADD CONSTRAINT "artifact_events_registry_id_registries_id_fk" FOREIGN KEY ("registry_id") REFERENCES "public"."registries"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_events" ADD CONSTRAINT "artifact_events_collection_id_artifact_collections_id_fk" FOREIGN KEY ("collection_id") REFERENCES "public"."artifact_collections"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_events" ADD CONSTRAINT "artifact_events_created_by_id_users_id_fk" FOREIGN KEY ("created_by_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_actor_id_users_id_fk" FOREIGN KEY ("actor_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automation_secret_refs" ADD CONSTRAINT "automation_secret_refs_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automation_secret_refs" ADD CONSTRAINT "automation_secret_refs_secret_id_secrets_id_fk" FOREIGN KEY ("secret_id") REFERENCES "public"."secrets"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automations" ADD CONSTRAINT "automations_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automations" ADD CONSTRAINT "automations_action_id_actions_id_fk" FOREIGN KEY ("action_id") REFERENCES "public"."actions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automations" ADD CONSTRAINT "automations_created_by_id_users_id_fk" FOREIGN KEY ("created_by_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "delivery_attempts" ADD CONSTRAINT "delivery_attempts_run_id_triggered_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."triggered_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "memberships" ADD CONSTRAINT "memberships_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "memberships" ADD CONSTRAINT "memberships_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "projects" ADD CONSTRAINT "projects_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "registries" ADD CONSTRAINT "registries_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "secrets" ADD CONSTRAINT "secrets_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "secrets" ADD CONSTRAINT "secrets_created_by_id_users_id_fk" FOREIGN KEY ("created_by_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "secrets" ADD CONSTRAINT "secrets_rotated_by_id_users_id_fk" FOREIGN KEY ("rotated_by_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "triggered_runs" ADD CONSTRAINT "triggered_runs_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "triggered_runs" ADD CONSTRAINT "triggered_runs_event_id_artifact_events_id_fk" FOREIGN KEY ("event_id") REFERENCES "public"."artifact_events"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "triggered_runs" ADD CONSTRAINT "triggered_runs_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "triggered_runs" ADD CONSTRAINT "triggered_runs_action_id_actions_id_fk" FOREIGN KEY ("action_id") REFERENCES "public"."actions"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "actions_entity_name_idx" ON "actions" USING btree ("entity_id","name");--> statement-breakpoint
CREATE INDEX "actions_access_token_secret_idx" ON "actions" USING btree ("access_token_secret_id");--> statement-breakpoint
CREATE INDEX "actions_signing_secret_idx" ON "actions" USING btree ("signing_secret_id");--> statement-breakpoint
CREATE INDEX "actions_slack_url_secret_idx" ON "actions" USING btree ("slack_url_secret_id");--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_hash_idx" ON "api_keys" USING btree ("hash");--> statement-breakpoint
CREATE INDEX "api_keys_user_idx" ON "api_keys" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "collections_project_name_idx" ON "artifact_collections" USING btree ("project_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "collections_registry_name_idx" ON "artifact_collections" USING btree ("registry_id","name");--> statement-breakpoint
CREATE INDEX "collections_entity_idx" ON "artifact_collections" USING btree ("entity_id");--> statement-breakpoint
CREATE UNIQUE INDEX "artifact_events_idempotency_idx" ON "artifact_events" USING btree ("entity_id","idempotency_key");--> statement-breakpoint
CREATE INDEX "artifact_events_entity_created_idx" ON "artifact_events" USING btree ("entity_id","created_at");--> statement-breakpoint
CREATE INDEX "artifact_events_project_idx" ON "artifact_events" USING btree ("project_id","created_at");--> statement-breakpoint
CREATE INDEX "artifact_events_registry_idx" ON "artifact_events" USING btree ("registry_id","created_at");--> statement-breakpoint
CREATE INDEX "audit_log_entity_idx" ON "audit_log" USING btree ("entity_id","created_at","seq");--> statement-breakpoint
CREATE INDEX "automation_secret_refs_secret_idx" ON "automation_secret_refs" USING btree ("secret_id");--> statement-breakpoint
CREATE UNIQUE INDEX "automations_entity_name_idx" ON "automations" USING btree ("entity_id","name");--> statement-breakpoint
CREATE INDEX "automations_match_idx" ON "automations" USING btree ("scope_id","event_type","enabled");--> statement-breakpoint
CREATE INDEX "automations_action_idx" ON "automations" USING btree ("action_id");--> statement-breakpoint
CREATE UNIQUE INDEX "delivery_attempts_run_idx" ON "delivery_attempts" USING btree ("run_id","attempt_number");--> statement-breakpoint
CREATE UNIQUE INDEX "entities_name_idx" ON "entities" USING btree ("name");--> statement-breakpoint
CREATE INDEX "memberships_user_idx" ON "memberships" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "projects_entity_name_idx" ON "projects" USING btree ("entity_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "registries_entity_name_idx" ON "registries" USING btree ("entity_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "secrets_entity_name_idx" ON "secrets" USING btree ("entity_id","name");--> statement-breakpoint
CREATE INDEX "triggered_runs_due_idx" ON "triggered_runs" USING btree ("due_at","seq") WHERE "triggered_runs"."due_at" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "triggered_runs_event_seq_idx" ON "triggered_runs" USING btree ("event_id","seq");--> statement-breakpoint
CREATE INDEX "triggered_runs_entity_created_idx" ON "triggered_runs" USING btree ("entity_id","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_entity_status_created_idx" ON "triggered_runs" USING btree ("entity_id","status","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_project_created_idx" ON "triggered_runs" USING btree ("project_id","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_project_status_created_idx" ON "triggered_runs" USING btree ("project_id","status","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_registry_created_idx" ON "triggered_runs" USING btree ("registry_id","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_registry_status_created_idx" ON "triggered_runs" USING btree ("registry_id","status","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_automation_created_idx" ON "triggered_runs" USING btree ("automation_id","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_automation_status_created_idx" ON "triggered_runs" USING btree ("automation_id","status","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_event_created_idx" ON "triggered_runs" USING btree ("event_id","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_event_status_created_idx" ON "triggered_runs" USING btree ("event_id","status","created_at","id");