//! A loopback EVM chain for tests and the demo: it takes real signed transfers
//! (`eth_sendRawTransaction`, legacy EIP-155), checks the signature, chain id, nonce and
//! balance, puts each in a block of its own, and answers the calls the payment verifier makes.
//! `evm_mine` adds empty blocks, as Hardhat and Anvil do, so tests control confirmations.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Json, Router, extract::State, routing::post};
use gata_wallet::{Address, SignedTx};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

/// Gas a plain transfer costs, and its price here: fees are charged like a real chain's.
const TRANSFER_GAS: u64 = 21_000;

#[derive(Default)]
struct Chain {
    chain_id: u64,
    head: u64,
    balances: HashMap<Address, u128>,
    nonces: HashMap<Address, u64>,
    txs: HashMap<String, (SignedTx, u64)>,
}

/// A running emulator; dropping it stops it.
pub struct ChainEmulator {
    addr: SocketAddr,
    chain: Arc<Mutex<Chain>>,
    stop: CancellationToken,
}

impl Drop for ChainEmulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn hex_quantity(n: impl Into<u128>) -> String {
    format!("0x{:x}", n.into())
}

impl ChainEmulator {
    /// Starts a chain `chain_id` on a free loopback port, with `funded` balances (wei).
    pub async fn start(chain_id: u64, funded: &[(Address, u128)]) -> std::io::Result<ChainEmulator> {
        let chain = Chain { chain_id, balances: funded.iter().copied().collect(), ..Chain::default() };
        let chain = Arc::new(Mutex::new(chain));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = Router::new().route("/", post(rpc)).with_state(chain.clone());
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "chain emulator stopped");
            }
        });
        Ok(ChainEmulator { addr, chain, stop })
    }

    /// Its JSON-RPC endpoint.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).expect("a loopback URL parses")
    }

    /// Adds `blocks` empty blocks.
    pub fn mine(&self, blocks: u64) {
        self.chain.lock().expect("chain lock").head += blocks;
    }
}

async fn rpc(State(chain): State<Arc<Mutex<Chain>>>, Json(request): Json<Value>) -> Json<Value> {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request["method"].as_str().unwrap_or_default();
    let params = request.get("params").and_then(Value::as_array).cloned().unwrap_or_default();
    let answer = {
        let mut chain = chain.lock().expect("chain lock");
        chain.call(method, &params)
    };
    Json(match answer {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err((code, message)) => json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }),
    })
}

type Answer = Result<Value, (i64, String)>;

fn invalid(message: impl Into<String>) -> (i64, String) {
    (-32602, message.into())
}

impl Chain {
    fn call(&mut self, method: &str, params: &[Value]) -> Answer {
        let text = |i: usize| params.get(i).and_then(Value::as_str).ok_or_else(|| invalid(format!("param {i}")));
        let account = |i: usize| text(i)?.parse::<Address>().map_err(|e| invalid(e.to_string()));
        match method {
            "eth_chainId" => Ok(json!(hex_quantity(self.chain_id))),
            "eth_blockNumber" => Ok(json!(hex_quantity(self.head))),
            "evm_mine" => {
                self.head += 1;
                Ok(json!("0x0"))
            }
            "eth_getBalance" => Ok(json!(hex_quantity(self.balances.get(&account(0)?).copied().unwrap_or(0)))),
            "eth_getTransactionCount" => Ok(json!(hex_quantity(self.nonces.get(&account(0)?).copied().unwrap_or(0)))),
            "eth_sendRawTransaction" => self.send(text(0)?),
            "eth_getTransactionByHash" => {
                Ok(self.txs.get(&text(0)?.to_ascii_lowercase()).map_or(Value::Null, |(s, block)| {
                    json!({
                        "hash": format!("0x{}", hex::encode(s.hash)),
                        "from": s.from.to_string(),
                        "to": s.tx.to.map(|a| a.to_string()),
                        "value": hex_quantity(s.tx.value),
                        "input": format!("0x{}", hex::encode(&s.tx.data)),
                        "nonce": hex_quantity(s.tx.nonce),
                        "blockNumber": hex_quantity(*block),
                    })
                }))
            }
            "eth_getTransactionReceipt" => {
                Ok(self.txs.get(&text(0)?.to_ascii_lowercase()).map_or(Value::Null, |(s, block)| {
                    json!({
                        "transactionHash": format!("0x{}", hex::encode(s.hash)),
                        "blockNumber": hex_quantity(*block),
                        "status": "0x1",
                    })
                }))
            }
            other => Err((-32601, format!("method {other} is not served by the emulator"))),
        }
    }

    fn send(&mut self, raw: &str) -> Answer {
        let bytes = hex::decode(raw.strip_prefix("0x").unwrap_or(raw)).map_err(|e| invalid(e.to_string()))?;
        let signed = SignedTx::decode(&bytes).map_err(|e| invalid(e.to_string()))?;
        if signed.tx.chain_id != self.chain_id {
            return Err(invalid(format!("signed for chain {}, this is {}", signed.tx.chain_id, self.chain_id)));
        }
        let nonce = self.nonces.get(&signed.from).copied().unwrap_or(0);
        if signed.tx.nonce != nonce {
            return Err(invalid(format!("nonce {} where {nonce} is next", signed.tx.nonce)));
        }
        if signed.tx.gas < TRANSFER_GAS {
            return Err(invalid("intrinsic gas too low"));
        }
        let to = signed.tx.to.ok_or_else(|| invalid("the emulator takes transfers, not contract creations"))?;
        let fee = u128::from(TRANSFER_GAS) * signed.tx.gas_price;
        let cost = signed.tx.value.checked_add(fee).ok_or_else(|| invalid("value overflows"))?;
        let balance = self.balances.get(&signed.from).copied().unwrap_or(0);
        if balance < cost {
            return Err((-32000, format!("insufficient funds: {balance} wei, {cost} needed")));
        }
        self.balances.insert(signed.from, balance - cost);
        *self.balances.entry(to).or_default() += signed.tx.value;
        self.nonces.insert(signed.from, nonce + 1);
        self.head += 1;
        let hash = format!("0x{}", hex::encode(signed.hash));
        self.txs.insert(hash.clone(), (signed, self.head));
        Ok(json!(hash))
    }
}
