-- Emails are compared case-insensitively: a user's identity is its email key
-- (NFC, lowercase; computed by Tessera, see domain/names.rs), unique per
-- organization. `email` keeps the spelling given, for display. Existing rows
-- get lower(email); should two of them differ only in case, the later one's
-- key is suffixed with its id so this step cannot fail (both stay, no new
-- duplicate can be made).
ALTER TABLE users ADD COLUMN email_key TEXT;
UPDATE users AS u SET email_key = lower(u.email) || CASE WHEN EXISTS (
    SELECT 1 FROM users u2
    WHERE u2.org_id = u.org_id AND lower(u2.email) = lower(u.email) AND u2.id < u.id
) THEN '#' || u.id ELSE '' END
WHERE u.email IS NOT NULL;
DROP INDEX users_org_email;
CREATE UNIQUE INDEX users_org_email_key ON users (org_id, email_key);
