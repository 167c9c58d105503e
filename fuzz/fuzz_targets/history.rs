#![no_main]
// See openai_agents_session::fuzzing::history for what this target decodes and checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| openai_agents_session::fuzzing::history(data));
