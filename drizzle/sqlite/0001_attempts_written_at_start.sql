PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_delivery_attempts` (
	`id` text PRIMARY KEY NOT NULL,
	`run_id` text NOT NULL,
	`attempt_number` integer NOT NULL,
	`started_at` integer NOT NULL,
	`duration_ms` integer,
	`status_code` integer,
	`error_class` text,
	`error_message` text,
	`response_body` text,
	FOREIGN KEY (`run_id`) REFERENCES `triggered_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
INSERT INTO `__new_delivery_attempts`("id", "run_id", "attempt_number", "started_at", "duration_ms", "status_code", "error_class", "error_message", "response_body") SELECT "id", "run_id", "attempt_number", "started_at", "duration_ms", "status_code", "error_class", "error_message", "response_body" FROM `delivery_attempts`;--> statement-breakpoint
DROP TABLE `delivery_attempts`;--> statement-breakpoint
ALTER TABLE `__new_delivery_attempts` RENAME TO `delivery_attempts`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE UNIQUE INDEX `delivery_attempts_run_idx` ON `delivery_attempts` (`run_id`,`attempt_number`);