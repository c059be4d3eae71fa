-- Drop of 80 (rolling back below 30): the pusher's functions and the write-backs they generated.
drop function if exists keap_pipeline.write_back_tags(integer, uuid, jsonb);
drop function if exists keap_pipeline.write_back_contacts(integer, uuid, jsonb);
drop function if exists keap_pipeline.define_outbound_entity(text, regclass, regclass);
drop function if exists keap_pipeline.retry_failed_outbound(text[]);
drop function if exists keap_pipeline.mark_unsupported_outbound(text[], text);
drop function if exists keap_pipeline.finish_outbound(integer, jsonb);
drop function if exists keap_pipeline.mark_outbound_in_flight(integer, jsonb);
drop function if exists keap_pipeline.claim_outbound(integer, text[], integer);
drop function if exists keap_pipeline.outbound_live_claims();
