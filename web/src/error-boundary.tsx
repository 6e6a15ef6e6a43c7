import { Component, type ComponentChildren } from 'preact';
import { messageOf } from './ui';

/** Never a blank screen: a render error or an unhandled rejection becomes a readable message with a way out. */
export class ErrorBoundary extends Component<{ children: ComponentChildren }, { error: string | null }> {
  override state = { error: null as string | null };
  private onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    this.setState({ error: messageOf(e.reason) });
  };

  override componentDidMount() {
    window.addEventListener('unhandledrejection', this.onRejection);
  }
  override componentWillUnmount() {
    window.removeEventListener('unhandledrejection', this.onRejection);
  }
  override componentDidCatch(error: unknown) {
    this.setState({ error: messageOf(error) });
  }

  override render() {
    if (this.state.error === null) return this.props.children;
    return (
      <main class="container">
        <article>
          <h1>Something went wrong</h1>
          <p role="alert">{this.state.error}</p>
          <button type="button" onClick={() => location.reload()}>
            Reload the console
          </button>
        </article>
      </main>
    );
  }
}
