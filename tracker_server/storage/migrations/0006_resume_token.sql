-- The token of the resume that started the current attempt (CreateRunRequest.resume_token):
-- a repeated token (another rank of the same restart, a retried call) does not start
-- another attempt.
ALTER TABLE runs ADD COLUMN resume_token text NOT NULL DEFAULT '';
