-- Claim onboarding on several replicas (issue 21, item 1): the request that issues a claim's first
-- certificate holds a lease on its binding, so a second replica answering the same claim at the
-- same moment waits for that certificate (and answers it again, or refuses another key) instead
-- of issuing a second one. A lease left by a crashed replica expires; a failed issuance clears it.
ALTER TABLE claim_enrollments ADD COLUMN issuing_until timestamptz;
