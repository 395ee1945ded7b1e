CREATE TABLE "run_automation_firings" (
	"automation_id" text NOT NULL,
	"training_run_id" text NOT NULL,
	"fired_at" bigint NOT NULL,
	CONSTRAINT "run_automation_firings_training_run_id_automation_id_pk" PRIMARY KEY("training_run_id","automation_id")
);
--> statement-breakpoint
CREATE TABLE "run_events" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"project_id" text NOT NULL,
	"training_run_id" text NOT NULL,
	"report_id" text NOT NULL,
	"event_type" text NOT NULL,
	"run_state" text NOT NULL,
	"metric_name" text,
	"metric_values" json,
	"condition" text NOT NULL,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "run_metric_windows" (
	"training_run_id" text NOT NULL,
	"project_id" text NOT NULL,
	"name" text NOT NULL,
	"last_step" integer NOT NULL,
	"count" integer NOT NULL,
	"recent" json NOT NULL,
	"updated_at" bigint NOT NULL,
	CONSTRAINT "run_metric_windows_training_run_id_name_pk" PRIMARY KEY("training_run_id","name")
);
--> statement-breakpoint
CREATE TABLE "run_reports" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"training_run_id" text NOT NULL,
	"kind" text NOT NULL,
	"accepted_points" integer NOT NULL,
	"idempotency_key" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL
);
--> statement-breakpoint
CREATE TABLE "training_runs" (
	"id" text PRIMARY KEY NOT NULL,
	"entity_id" text NOT NULL,
	"project_id" text NOT NULL,
	"name" text NOT NULL,
	"state" text NOT NULL,
	"reported_by_id" text,
	"created_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
ALTER TABLE "triggered_runs" ALTER COLUMN "event_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "filter_run_name_pattern" text;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "filter_run_reported_by_id" text;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "run_condition" json;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "cooldown_seconds" integer;--> statement-breakpoint
ALTER TABLE "triggered_runs" ADD COLUMN "run_event_id" text;--> statement-breakpoint
ALTER TABLE "triggered_runs" ADD COLUMN "training_run_id" text;--> statement-breakpoint
ALTER TABLE "run_automation_firings" ADD CONSTRAINT "run_automation_firings_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_automation_firings" ADD CONSTRAINT "run_automation_firings_training_run_id_training_runs_id_fk" FOREIGN KEY ("training_run_id") REFERENCES "public"."training_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_events" ADD CONSTRAINT "run_events_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_events" ADD CONSTRAINT "run_events_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_events" ADD CONSTRAINT "run_events_training_run_id_training_runs_id_fk" FOREIGN KEY ("training_run_id") REFERENCES "public"."training_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_events" ADD CONSTRAINT "run_events_report_id_run_reports_id_fk" FOREIGN KEY ("report_id") REFERENCES "public"."run_reports"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_metric_windows" ADD CONSTRAINT "run_metric_windows_training_run_id_training_runs_id_fk" FOREIGN KEY ("training_run_id") REFERENCES "public"."training_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_reports" ADD CONSTRAINT "run_reports_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_reports" ADD CONSTRAINT "run_reports_training_run_id_training_runs_id_fk" FOREIGN KEY ("training_run_id") REFERENCES "public"."training_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_runs" ADD CONSTRAINT "training_runs_entity_id_entities_id_fk" FOREIGN KEY ("entity_id") REFERENCES "public"."entities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_runs" ADD CONSTRAINT "training_runs_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_runs" ADD CONSTRAINT "training_runs_reported_by_id_users_id_fk" FOREIGN KEY ("reported_by_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "run_events_report_idx" ON "run_events" USING btree ("report_id");--> statement-breakpoint
CREATE INDEX "run_metric_windows_peers_idx" ON "run_metric_windows" USING btree ("project_id","name","updated_at");--> statement-breakpoint
CREATE UNIQUE INDEX "run_reports_idempotency_idx" ON "run_reports" USING btree ("entity_id","idempotency_key");--> statement-breakpoint
CREATE UNIQUE INDEX "training_runs_project_name_idx" ON "training_runs" USING btree ("project_id","name");--> statement-breakpoint
CREATE INDEX "training_runs_project_created_idx" ON "training_runs" USING btree ("project_id","created_at","id");--> statement-breakpoint
ALTER TABLE "triggered_runs" ADD CONSTRAINT "triggered_runs_run_event_id_run_events_id_fk" FOREIGN KEY ("run_event_id") REFERENCES "public"."run_events"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "triggered_runs_run_event_seq_idx" ON "triggered_runs" USING btree ("run_event_id","seq");--> statement-breakpoint
CREATE INDEX "triggered_runs_training_run_created_idx" ON "triggered_runs" USING btree ("training_run_id","created_at","id");--> statement-breakpoint
CREATE INDEX "triggered_runs_training_run_status_created_idx" ON "triggered_runs" USING btree ("training_run_id","status","created_at","id");