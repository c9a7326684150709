// Keyboard users and Streamlit's "Expand sidebar" / "Collapse sidebar" buttons (Streamlit's own
// header controls). Each button is removed from the page once pressed, so keyboard focus fell
// back to the page's start: after Enter on "Expand sidebar" in a narrow window (640 px) the
// sidebar opened over the page but the next Tab went to the main page behind it, as if Enter had
// done nothing. Here focus follows the press: into the opened sidebar, or back onto "Expand
// sidebar" once it is closed. Keyboard presses only (a click by Enter or Space has detail 0),
// so a mouse user's focus is left alone. Loaded once per browser tab.
(() => {
  if (window.brainMriSidebarFocus) return;
  window.brainMriSidebarFocus = true;
  const OPENED = '[data-testid="stSidebar"][aria-expanded="true"] [data-testid="stSidebarNavLink"], '
    + '[data-testid="stSidebar"][data-collapsed="false"] [data-testid="stSidebarNavLink"]';
  const CLOSED = '[data-testid="stExpandSidebarButton"]';
  document.addEventListener("click", (event) => {
    if (event.detail !== 0 || !(event.target instanceof Element)) return;
    const opening = event.target.closest('[data-testid="stExpandSidebarButton"]');
    const closing = event.target.closest('[data-testid="stSidebarCollapseButton"]');
    if (!opening && !closing) return;
    let tries = 0;
    const follow = () => {  // the sidebar opens or closes over a few frames
      const goal = document.querySelector(opening ? OPENED : CLOSED);
      if (goal) goal.focus();
      if ((!goal || document.activeElement !== goal) && ++tries < 40) setTimeout(follow, 50);
    };
    setTimeout(follow, 50);
  }, true);
})();
