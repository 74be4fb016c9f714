"""Invented, readable class names for the demo dataset: ``Vertical/Thing``."""

VERTICALS: dict[str, tuple[str, ...]] = {
    "Vehicle": ("Car", "Truck", "Motorcycle", "Bicycle", "Bus", "Train", "Airplane", "Helicopter", "Boat",
                "Tractor", "Scooter", "Skateboard", "Van", "Race Car", "Submarine", "Tram"),
    "Music": ("Guitar", "Piano", "Drums", "Violin", "Choir", "Concert", "Saxophone", "Trumpet", "Flute", "Cello",
              "Harp", "DJ Set", "Accordion", "Ukulele", "Orchestra", "Banjo"),
    "Sport": ("Football", "Basketball", "Tennis", "Swimming", "Skiing", "Surfing", "Boxing", "Cycling Race", "Golf",
              "Baseball", "Volleyball", "Climbing", "Running", "Rowing", "Fencing", "Archery"),
    "Animal": ("Dog", "Cat", "Horse", "Bird", "Fish", "Elephant", "Lion", "Monkey", "Cow", "Sheep", "Parrot",
               "Snake", "Turtle", "Rabbit", "Bear", "Dolphin"),
    "Food": ("Cake", "Pizza", "Noodles", "Salad", "Bread", "Soup", "Sushi", "Barbecue", "Ice Cream", "Coffee",
             "Chocolate", "Pancake", "Curry", "Cheese", "Fruit", "Sandwich"),
    "Games": ("Chess", "Card Game", "Puzzle", "Strategy Game", "Racing Game", "Shooter Game", "Board Game",
              "Arcade", "Role-Playing Game", "Sandbox Game", "Dice", "Pinball", "Trivia", "Platformer",
              "Sports Game", "Rhythm Game"),
    "Nature": ("Forest", "Mountain", "Desert", "River", "Waterfall", "Volcano", "Cave", "Beach", "Glacier",
               "Meadow", "Canyon", "Lake", "Jungle", "Island", "Sunset", "Flower"),
    "Dance": ("Ballet", "Salsa", "Tango", "Hip Hop Dance", "Breakdance", "Tap Dance", "Folk Dance", "Waltz",
              "Flamenco", "Line Dance", "Swing Dance", "Contemporary Dance", "Belly Dance", "Zumba",
              "Square Dance", "Cheerleading"),
    "Technology": ("Smartphone", "Laptop", "Robot", "Drone", "Camera", "Headphones", "3D Printer", "Smartwatch",
                   "Television", "Game Console", "Circuit Board", "Keyboard", "Tablet", "Satellite",
                   "Microphone", "Virtual Reality"),
    "Home": ("Kitchen", "Garden", "Furniture", "Bathroom", "Bedroom", "Cleaning", "Wall Painting", "Plumbing",
             "Lighting", "Carpet", "Window", "Staircase", "Fireplace", "Laundry", "Roof", "Garage"),
    "Fashion": ("Dress", "Shoes", "Makeup", "Hairstyle", "Jewelry", "Handbag", "Sunglasses", "Wristwatch", "Hat",
                "Jacket", "Nail Art", "Tattoo", "Perfume", "Jeans", "Scarf", "Runway"),
    "Art": ("Drawing", "Sculpture", "Pottery", "Origami", "Calligraphy", "Graffiti", "Watercolor", "Photography",
            "Animation", "Knitting", "Woodworking", "Mosaic", "Comics", "Embroidery", "Glassblowing",
            "Printmaking"),
    "Science": ("Chemistry", "Microscope", "Telescope", "Rocket", "Astronomy", "Fossil", "Magnet", "Laboratory",
                "Solar Panel", "Weather Balloon", "Physics Demo", "Biology", "Robotics Lab", "Geology",
                "Electricity", "Optics"),
    "Travel": ("Airport", "Hotel", "Camping", "Road Trip", "Cruise", "Backpacking", "City Tour", "Museum",
               "Theme Park", "Train Station", "Market", "Festival", "Parade", "Fireworks", "Castle", "Bridge"),
    "Water": ("Diving", "Sailing", "Kayaking", "Fishing", "Waterskiing", "Snorkeling", "Rafting", "Water Polo",
              "Jet Ski", "Paddleboarding", "Windsurfing", "Pool", "Fountain", "Aquarium", "Rain", "Waves"),
    "Family": ("Wedding", "Birthday Party", "Baby", "Toddler", "Graduation", "Picnic", "Holiday", "Dinner",
               "Reunion", "Playground", "Bath Time", "Family Game", "Shopping", "Baking Together", "Storytime",
               "Pet Care"),
}


def leaf_name(vertical: str, position: int) -> str:
    """The ``position``-th child name of ``vertical``; numbered once the list runs out."""
    names = VERTICALS[vertical]
    base = names[position % len(names)]
    round_ = position // len(names)
    return f"{vertical}/{base}" + (f" {round_ + 1}" if round_ else "")
