-- Whether the answer was served from the gateway's response cache (no provider call, cost 0);
-- 0 for every request before this release and for every one the provider answered.

ALTER TABLE generations ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
