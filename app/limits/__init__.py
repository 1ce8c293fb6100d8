"""Flow control: limit keys, the workspace cap, and the gate every gated run's claim passes."""
