//! A realistic multi-turn agent conversation stored in the embedded SQLite default.
//!
//! ```text
//! cargo run -p openai-agents-session --example conversation [STORE_URL]
//! ```
//!
//! A scripted "model" answers two user turns the way the OpenAI Agents SDK records them:
//! reasoning, a function call, the tool's output, then an assistant message. The session is
//! written turn by turn, the store is closed and re-opened (as a new process would), the
//! remembered history is printed, and the last turn is rewound with `pop_item`, the way the
//! Agents SDK's runner rewinds a failed model retry.

use openai_agents_session::{Item, Session, Store};
use serde_json::json;

const SESSION_ID: &str = "user-42:trip-planning";

fn item(value: serde_json::Value) -> Item {
    Item::from_value(value).expect("the script only writes JSON objects")
}

/// What the scripted model and its tool produce for one user message.
fn model_turn(turn: usize, user_text: &str) -> Vec<Item> {
    let (thought, tool, args, output, answer) = match turn {
        1 => (
            "The user asks about Lisbon weather next week; look it up before answering.",
            "get_forecast",
            json!({"city": "Lisbon", "days": 7}).to_string(),
            json!({"city": "Lisbon", "daily": [{"day": "Mon", "high_c": 24, "rain_mm": 0.0}, {"day": "Tue", "high_c": 22, "rain_mm": 1.2}]}).to_string(),
            "Lisbon looks warm next week: 24\u{b0}C on Monday, a little rain (1.2 mm) on Tuesday.",
        ),
        _ => (
            "They want a hotel near the river for those dates; search, then summarise the best two.",
            "search_hotels",
            json!({"city": "Lisbon", "near": "Tagus river", "nights": 3, "max_price_eur": 180}).to_string(),
            json!([{"name": "Hotel Ribeira", "price_eur": 165, "rating": 4.6}, {"name": "Casa do Cais", "price_eur": 142, "rating": 4.4}]).to_string(),
            "Two good options by the river: Hotel Ribeira (\u{20ac}165, 4.6\u{2605}) and Casa do Cais (\u{20ac}142, 4.4\u{2605}).",
        ),
    };
    let call_id = format!("call_{turn:03}");
    vec![
        item(json!({"content": user_text, "role": "user"})),
        item(json!({
            "id": format!("rs_{turn:03}"),
            "summary": [{"text": thought, "type": "summary_text"}],
            "type": "reasoning"
        })),
        item(json!({
            "arguments": args,
            "call_id": call_id,
            "name": tool,
            "type": "function_call",
            "id": format!("fc_{turn:03}"),
            "status": "completed"
        })),
        item(json!({"call_id": call_id, "output": output, "type": "function_call_output"})),
        item(json!({
            "id": format!("msg_{turn:03}"),
            "content": [{"annotations": [], "text": answer, "type": "output_text", "logprobs": []}],
            "role": "assistant",
            "status": "completed",
            "type": "message"
        })),
    ]
}

fn describe(item: &Item) -> String {
    let v = item.to_value();
    let kind = item.item_type().unwrap_or_else(|| "message".into());
    match kind.as_str() {
        "reasoning" => format!(
            "reasoning      {}",
            v["summary"][0]["text"].as_str().unwrap_or("")
        ),
        "function_call" => format!(
            "function_call  {}({})",
            v["name"].as_str().unwrap_or("?"),
            v["arguments"].as_str().unwrap_or("")
        ),
        "function_call_output" => format!("tool output    {}", v["output"].as_str().unwrap_or("")),
        _ => {
            let role = v["role"].as_str().unwrap_or("?");
            let text = v["content"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| v["content"][0]["text"].as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("{role:<14} {text}")
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://example-conversation.db".to_owned());
    println!("== 1. Open the store at {url} (the embedded SQLite default) ==");
    let store = Store::open(&url).await?;
    let session = store.session(SESSION_ID)?;
    session.clear_session().await?; // start the demo from an empty session
    println!("   session {SESSION_ID:?} is ready; a session handle does no I/O\n");

    println!("== 2. Play two turns; each turn is saved as ONE atomic add_items batch ==");
    let turns = [
        "What's the weather in Lisbon next week?",
        "Great. Find me a hotel near the river for three nights.",
    ];
    for (n, user_text) in turns.iter().enumerate() {
        let items = model_turn(n + 1, user_text);
        println!(
            "   turn {}: saving {} items (user, reasoning, call, output, answer)",
            n + 1,
            items.len()
        );
        session.add_items(items).await?;
    }
    drop(session);
    drop(store);
    println!("   store closed\n");

    println!("== 3. Re-open the store, as the next process would, and read the memory ==");
    let store = Store::open(&url).await?;
    let session = store.session(SESSION_ID)?;
    let history = session.get_items(None).await?;
    for (i, item) in history.iter().enumerate() {
        println!("   {:>2}. {}", i + 1, describe(item));
    }
    let info = store
        .session_info(SESSION_ID)
        .await?
        .ok_or("the session should exist")?;
    println!(
        "   {} items, created {}, updated {}\n",
        info.item_count, info.created_at, info.updated_at
    );

    println!("== 4. Give the model only recent context: get_items(Some(3)) ==");
    for item in session.get_items(Some(3)).await? {
        println!("       {}", describe(&item));
    }
    println!();

    println!("== 5. Rewind the last turn with pop_item (newest first), as a retry would ==");
    for _ in 0..5 {
        if let Some(item) = session.pop_item().await? {
            println!("   popped: {}", describe(&item));
        }
    }
    let remaining = session.get_items(None).await?;
    println!(
        "   {} items remain; the newest is now: {}",
        remaining.len(),
        remaining.last().map(describe).unwrap_or_default()
    );
    println!("\nDone. Inspect it yourself: cargo run -p agent-session-cli -- --url {url} get {SESSION_ID:?}");
    Ok(())
}
