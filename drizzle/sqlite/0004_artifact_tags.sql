ALTER TABLE `artifact_events` ADD `tag` text;--> statement-breakpoint
ALTER TABLE `automations` ADD `filter_tag_pattern` text;