-- The end user a request was made for (OpenAI's `user`, Anthropic's `metadata.user_id`, or the
-- X-ARouter-User header), as the client sent it (at most 256 characters); NULL when none was given.

ALTER TABLE generations ADD COLUMN end_user text;
