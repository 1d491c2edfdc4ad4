"""The コンビニ交付 services behind the kiosk: centre, municipality, documents and their trust checks."""
