/** Where Tripline answers, and as whom. */
export interface TriplineClientOptions {
  /** The GraphQL endpoint, such as `http://127.0.0.1:4000/graphql`; WebSockets use its path too. */
  url: string;
  /** An API key, `tl_…`. */
  apiKey: string;
  /** A WebSocket class where the platform has none, such as `ws`'s on Node.js 20. */
  webSocketImpl?: unknown;
}
